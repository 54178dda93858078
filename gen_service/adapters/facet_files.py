"""Loading the facet lists (``prompts/facets/``) into a :class:`FacetLibrary`.

Layout (under ``[service].prompts_dir``)::

    facets/README.md                       the format, for the writers who edit the lists
    facets/shared/first_names.txt          lists every type uses
    facets/<type>/<facet>.txt              one list per facet of a type's briefs

A list missing from a custom prompts folder is read from the shipped prompts, so a writer can
override one list by copying just that file; a ``.txt`` file under ``facets/`` that gen-service
does not read is an error, since a misspelt name would otherwise be ignored without a word.
Problems become a :class:`ConfigError` naming the file and line, at start-up or on SIGHUP.
"""

from __future__ import annotations

import functools
from pathlib import Path

from gen_service import resources
from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.datatypes._sampling import SHARED_FACET_FILES
from gen_service.domain.facets import FacetFile, FacetLibrary, parse_facet_file
from gen_service.errors import ConfigError

FACETS_DIR = "facets"


def facet_files() -> list[FacetFile]:
    """Every facet file gen-service reads: the shared ones, then each data type's."""
    return [*SHARED_FACET_FILES, *(f for spec in REGISTRY.values() for f in spec.facet_files)]


def load_facet_library(prompts_dir: Path) -> FacetLibrary:
    """Read and check every facet list under ``prompts_dir/facets``, each missing one from the
    shipped prompts."""
    folder = prompts_dir / FACETS_DIR
    shipped = resources.prompts_dir() / FACETS_DIR
    files = facet_files()
    if folder.is_dir():
        _refuse_unknown(folder, files)
    lists = []
    for spec in files:
        path = folder / spec.filename
        if not path.is_file():
            path = shipped / spec.filename
        lists.append(parse_facet_file(spec, _read(path, spec), str(path)))
    return FacetLibrary(lists)


@functools.cache
def shipped_facet_library() -> FacetLibrary:
    """The facet lists shipped with gen-service (read once per process)."""
    return load_facet_library(resources.prompts_dir())


def _refuse_unknown(folder: Path, files: list[FacetFile]) -> None:
    known = {spec.filename for spec in files}
    for path in sorted(folder.rglob("*.txt")):
        name = path.relative_to(folder).as_posix()
        if name in known:
            continue
        here = sorted(k for k in known if k.rpartition("/")[0] == name.rpartition("/")[0])
        choices = here or sorted({k.rpartition("/")[0] + "/" for k in known})
        raise ConfigError(
            f"facet file {path} is not one gen-service reads; the names it reads there are "
            f"{', '.join(choices)} (see {folder / 'README.md'}): rename the file or move it "
            f"out of {folder}",
            path=str(path),
        )


def _read(path: Path, spec: FacetFile) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"missing facet file {path}: create {FACETS_DIR}/{spec.filename} ({spec.about}, "
            "one per line) in the prompts folder",
            path=str(path),
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"facet file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}): save it "
            "as UTF-8",
            path=str(path),
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read facet file {path}: {exc.strerror or exc}; check its permissions",
            path=str(path),
        ) from None
