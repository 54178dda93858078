"""The database schema: versioned migrations, applied in order at open.

The schema is part of the interface (README "The database"): tables runs, batches, samples,
judgments, reviews, phase_log, daily_counts, targets, settings; views progress, hourly_rate,
failures, quality. Each entry of :data:`MIGRATIONS` migrates from version i to i + 1; never
edit a released entry, append a new one.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY,
        started_at  TEXT NOT NULL,
        ended_at    TEXT,
        status      TEXT NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'finished', 'stopped', 'crashed')),
        pid         INTEGER,
        host        TEXT,
        version     TEXT,
        config_path TEXT,
        mode        TEXT
    );
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE targets (
        datatype     TEXT PRIMARY KEY,
        model        TEXT NOT NULL,
        daily_target INTEGER NOT NULL,
        total_target INTEGER NOT NULL,
        updated_at   TEXT NOT NULL
    );
    CREATE TABLE batches (
        id            INTEGER PRIMARY KEY,
        run_id        INTEGER REFERENCES runs(id),
        datatype      TEXT NOT NULL,
        model         TEXT NOT NULL,
        phase         TEXT,
        status        TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
        attempts      INTEGER NOT NULL,
        error         TEXT,
        requested     INTEGER NOT NULL,
        valid         INTEGER NOT NULL DEFAULT 0,
        invalid       INTEGER NOT NULL DEFAULT 0,
        accepted      INTEGER NOT NULL DEFAULT 0,
        rejected      INTEGER NOT NULL DEFAULT 0,
        duplicates    INTEGER NOT NULL DEFAULT 0,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        eval_tokens   INTEGER NOT NULL DEFAULT 0,
        total_s       REAL NOT NULL DEFAULT 0,
        load_s        REAL NOT NULL DEFAULT 0,
        eval_s        REAL NOT NULL DEFAULT 0,
        latency_s     REAL NOT NULL DEFAULT 0,
        seed          INTEGER,
        temperature   REAL,
        num_predict   INTEGER,
        created_at    TEXT NOT NULL,
        day           TEXT NOT NULL
    );
    CREATE INDEX batches_by_type_day ON batches (datatype, day);
    CREATE INDEX batches_by_created ON batches (created_at);
    CREATE TABLE samples (
        id           INTEGER PRIMARY KEY,
        batch_id     INTEGER NOT NULL REFERENCES batches(id),
        datatype     TEXT NOT NULL,
        status       TEXT NOT NULL CHECK (status IN ('accepted', 'rejected', 'duplicate')),
        reason       TEXT,
        content_hash TEXT,
        quota_key    TEXT,
        payload      TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        day          TEXT NOT NULL
    );
    -- Two accepted samples of one type never share a content hash: the database enforces it.
    CREATE UNIQUE INDEX samples_accepted_hash ON samples (datatype, content_hash)
        WHERE status = 'accepted';
    CREATE INDEX samples_by_batch ON samples (batch_id);
    CREATE INDEX samples_by_type_status ON samples (datatype, status);
    CREATE TABLE daily_counts (
        datatype   TEXT NOT NULL,
        day        TEXT NOT NULL,
        accepted   INTEGER NOT NULL DEFAULT 0,
        rejected   INTEGER NOT NULL DEFAULT 0,
        duplicates INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (datatype, day)
    ) WITHOUT ROWID;
    CREATE TRIGGER samples_count_insert AFTER INSERT ON samples BEGIN
        INSERT INTO daily_counts (datatype, day, accepted, rejected, duplicates)
        VALUES (NEW.datatype, NEW.day, NEW.status = 'accepted', NEW.status = 'rejected',
                NEW.status = 'duplicate')
        ON CONFLICT (datatype, day) DO UPDATE SET
            accepted = accepted + (NEW.status = 'accepted'),
            rejected = rejected + (NEW.status = 'rejected'),
            duplicates = duplicates + (NEW.status = 'duplicate');
    END;
    CREATE TRIGGER samples_count_delete AFTER DELETE ON samples BEGIN
        UPDATE daily_counts SET
            accepted = accepted - (OLD.status = 'accepted'),
            rejected = rejected - (OLD.status = 'rejected'),
            duplicates = duplicates - (OLD.status = 'duplicate')
        WHERE datatype = OLD.datatype AND day = OLD.day;
    END;
    CREATE TRIGGER samples_count_update AFTER UPDATE OF status, datatype, day ON samples BEGIN
        UPDATE daily_counts SET
            accepted = accepted - (OLD.status = 'accepted'),
            rejected = rejected - (OLD.status = 'rejected'),
            duplicates = duplicates - (OLD.status = 'duplicate')
        WHERE datatype = OLD.datatype AND day = OLD.day;
        INSERT INTO daily_counts (datatype, day, accepted, rejected, duplicates)
        VALUES (NEW.datatype, NEW.day, NEW.status = 'accepted', NEW.status = 'rejected',
                NEW.status = 'duplicate')
        ON CONFLICT (datatype, day) DO UPDATE SET
            accepted = accepted + (NEW.status = 'accepted'),
            rejected = rejected + (NEW.status = 'rejected'),
            duplicates = duplicates + (NEW.status = 'duplicate');
    END;
    CREATE TABLE phase_log (
        id          INTEGER PRIMARY KEY,
        run_id      INTEGER REFERENCES runs(id),
        phase       TEXT NOT NULL,
        kind        TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        ended_at    TEXT,
        model       TEXT,
        load_s      REAL,
        gpu_share   REAL,
        note        TEXT
    );
    -- "today" is the calendar day in the service's time zone; the service keeps its UTC
    -- offset in settings so plain sqlite3 sessions see the same day it does.
    CREATE VIEW progress AS
    WITH today (day) AS (
        SELECT date('now', COALESCE(
            (SELECT value FROM settings WHERE key = 'utc_offset_modifier'), '+0 minutes'))
    )
    SELECT t.datatype AS datatype,
           COALESCE(SUM(c.accepted), 0) AS accepted,
           COALESCE(SUM(c.rejected), 0) AS rejected,
           COALESCE(SUM(c.duplicates), 0) AS duplicates,
           COALESCE(SUM(CASE WHEN c.day = (SELECT day FROM today) THEN c.accepted END), 0)
               AS today,
           t.daily_target AS daily_target,
           t.total_target AS total_target,
           ROUND(100.0 * COALESCE(SUM(c.accepted), 0) / NULLIF(t.total_target, 0), 1)
               AS pct_of_total
    FROM targets t LEFT JOIN daily_counts c ON c.datatype = t.datatype
    GROUP BY t.datatype;
    CREATE VIEW hourly_rate AS
    SELECT strftime('%Y-%m-%d %H:00', created_at) AS hour,
           datatype,
           model,
           COUNT(*) AS batches,
           SUM(status = 'failed') AS failed_batches,
           SUM(accepted) AS accepted,
           SUM(eval_tokens) AS eval_tokens,
           ROUND(SUM(eval_tokens) / NULLIF(SUM(eval_s), 0), 1) AS tokens_per_s
    FROM batches GROUP BY hour, datatype, model;
    CREATE VIEW failures AS
    SELECT id AS batch_id, created_at, datatype, model, phase, status, attempts, error
    FROM batches WHERE status = 'failed' OR error IS NOT NULL;
    """,
    # 2: provenance, the judge, flagged batches, regeneration and review (samples are rebuilt:
    # SQLite cannot widen a CHECK constraint in place).
    """
    ALTER TABLE batches ADD COLUMN template_hash TEXT;
    ALTER TABLE batches ADD COLUMN example_ids TEXT;
    ALTER TABLE batches ADD COLUMN briefs TEXT;
    ALTER TABLE batches ADD COLUMN refinement TEXT;
    ALTER TABLE batches ADD COLUMN replaces INTEGER REFERENCES batches(id);
    ALTER TABLE batches ADD COLUMN regeneration INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE batches ADD COLUMN judged_at TEXT;
    ALTER TABLE batches ADD COLUMN judged_mean REAL;
    ALTER TABLE batches ADD COLUMN flagged INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE batches ADD COLUMN flag_reason TEXT;
    ALTER TABLE batches ADD COLUMN review TEXT CHECK (review IN ('accepted', 'rejected'));
    ALTER TABLE batches ADD COLUMN reviewed_at TEXT;
    CREATE INDEX batches_flagged ON batches (datatype, flagged) WHERE flagged = 1;
    CREATE INDEX batches_unjudged ON batches (datatype) WHERE judged_at IS NULL AND accepted > 0;
    CREATE INDEX batches_by_replaces ON batches (replaces) WHERE replaces IS NOT NULL;

    CREATE TABLE samples_v2 (
        id           INTEGER PRIMARY KEY,
        batch_id     INTEGER NOT NULL REFERENCES batches(id),
        datatype     TEXT NOT NULL,
        status       TEXT NOT NULL
                     CHECK (status IN ('accepted', 'rejected', 'duplicate', 'flagged')),
        reason       TEXT,
        content_hash TEXT,
        quota_key    TEXT,
        payload      TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        day          TEXT NOT NULL,
        item_index   INTEGER,
        brief        TEXT
    );
    INSERT INTO samples_v2 (id, batch_id, datatype, status, reason, content_hash, quota_key,
                            payload, created_at, day)
        SELECT id, batch_id, datatype, status, reason, content_hash, quota_key, payload,
               created_at, day FROM samples;
    DROP TABLE samples;
    ALTER TABLE samples_v2 RENAME TO samples;
    CREATE UNIQUE INDEX samples_accepted_hash ON samples (datatype, content_hash)
        WHERE status = 'accepted';
    CREATE INDEX samples_by_batch ON samples (batch_id);
    CREATE INDEX samples_by_type_status ON samples (datatype, status);

    ALTER TABLE daily_counts ADD COLUMN flagged INTEGER NOT NULL DEFAULT 0;
    CREATE TRIGGER samples_count_insert AFTER INSERT ON samples BEGIN
        INSERT INTO daily_counts (datatype, day, accepted, rejected, duplicates, flagged)
        VALUES (NEW.datatype, NEW.day, NEW.status = 'accepted', NEW.status = 'rejected',
                NEW.status = 'duplicate', NEW.status = 'flagged')
        ON CONFLICT (datatype, day) DO UPDATE SET
            accepted = accepted + (NEW.status = 'accepted'),
            rejected = rejected + (NEW.status = 'rejected'),
            duplicates = duplicates + (NEW.status = 'duplicate'),
            flagged = flagged + (NEW.status = 'flagged');
    END;
    CREATE TRIGGER samples_count_delete AFTER DELETE ON samples BEGIN
        UPDATE daily_counts SET
            accepted = accepted - (OLD.status = 'accepted'),
            rejected = rejected - (OLD.status = 'rejected'),
            duplicates = duplicates - (OLD.status = 'duplicate'),
            flagged = flagged - (OLD.status = 'flagged')
        WHERE datatype = OLD.datatype AND day = OLD.day;
    END;
    CREATE TRIGGER samples_count_update AFTER UPDATE OF status, datatype, day ON samples BEGIN
        UPDATE daily_counts SET
            accepted = accepted - (OLD.status = 'accepted'),
            rejected = rejected - (OLD.status = 'rejected'),
            duplicates = duplicates - (OLD.status = 'duplicate'),
            flagged = flagged - (OLD.status = 'flagged')
        WHERE datatype = OLD.datatype AND day = OLD.day;
        INSERT INTO daily_counts (datatype, day, accepted, rejected, duplicates, flagged)
        VALUES (NEW.datatype, NEW.day, NEW.status = 'accepted', NEW.status = 'rejected',
                NEW.status = 'duplicate', NEW.status = 'flagged')
        ON CONFLICT (datatype, day) DO UPDATE SET
            accepted = accepted + (NEW.status = 'accepted'),
            rejected = rejected + (NEW.status = 'rejected'),
            duplicates = duplicates + (NEW.status = 'duplicate'),
            flagged = flagged + (NEW.status = 'flagged');
    END;

    CREATE TABLE judgments (
        id              INTEGER PRIMARY KEY,
        sample_id       INTEGER NOT NULL REFERENCES samples(id),
        batch_id        INTEGER NOT NULL REFERENCES batches(id),
        datatype        TEXT NOT NULL,
        model           TEXT NOT NULL,
        overall         REAL NOT NULL,
        authenticity    REAL NOT NULL,
        consistency     REAL NOT NULL,
        complexity      REAL NOT NULL,
        usability       REAL NOT NULL,
        label_agreement REAL,
        labels_ok       INTEGER,
        labels          TEXT,
        issues          TEXT NOT NULL DEFAULT '[]',
        recommendation  TEXT NOT NULL DEFAULT '',
        created_at      TEXT NOT NULL,
        day             TEXT NOT NULL
    );
    CREATE INDEX judgments_by_batch ON judgments (batch_id);
    CREATE INDEX judgments_by_sample ON judgments (sample_id);
    CREATE INDEX judgments_by_type_day ON judgments (datatype, day);

    CREATE TABLE reviews (
        id         INTEGER PRIMARY KEY,
        batch_id   INTEGER NOT NULL REFERENCES batches(id),
        decision   TEXT NOT NULL CHECK (decision IN ('accepted', 'rejected')),
        note       TEXT,
        decided_at TEXT NOT NULL
    );

    DROP VIEW progress;
    CREATE VIEW progress AS
    WITH today (day) AS (
        SELECT date('now', COALESCE(
            (SELECT value FROM settings WHERE key = 'utc_offset_modifier'), '+0 minutes'))
    )
    SELECT t.datatype AS datatype,
           COALESCE(SUM(c.accepted), 0) AS accepted,
           COALESCE(SUM(c.rejected), 0) AS rejected,
           COALESCE(SUM(c.duplicates), 0) AS duplicates,
           COALESCE(SUM(CASE WHEN c.day = (SELECT day FROM today) THEN c.accepted END), 0)
               AS today,
           t.daily_target AS daily_target,
           t.total_target AS total_target,
           ROUND(100.0 * COALESCE(SUM(c.accepted), 0) / NULLIF(t.total_target, 0), 1)
               AS pct_of_total,
           COALESCE(SUM(c.flagged), 0) AS flagged
    FROM targets t LEFT JOIN daily_counts c ON c.datatype = t.datatype
    GROUP BY t.datatype;

    -- Per type and day: how many samples were judged, their mean scores, and the batches the
    -- judge flagged (by the day the batch was made).
    CREATE VIEW quality AS
    SELECT j.datatype AS datatype,
           j.day AS day,
           COUNT(*) AS judged,
           ROUND(AVG(j.overall), 3) AS overall,
           ROUND(AVG(j.authenticity), 3) AS authenticity,
           ROUND(AVG(j.consistency), 3) AS consistency,
           ROUND(AVG(j.complexity), 3) AS complexity,
           ROUND(AVG(j.usability), 3) AS usability,
           ROUND(AVG(j.label_agreement), 3) AS label_agreement,
           (SELECT COUNT(*) FROM batches b
             WHERE b.datatype = j.datatype AND b.day = j.day AND b.flagged = 1)
               AS flagged_batches
    FROM judgments j
    GROUP BY j.datatype, j.day;
    """,
    # 3: near-duplicates and clusters. Every accepted sample's MinHash signature is kept, so
    # the index is rebuilt at start; a near-copy points at what it copies (duplicate_of); every
    # accepted sample belongs to a cluster of related samples that the export keeps in one split.
    """
    ALTER TABLE samples ADD COLUMN duplicate_of INTEGER REFERENCES samples(id);
    ALTER TABLE samples ADD COLUMN cluster_id INTEGER;
    CREATE INDEX samples_by_cluster ON samples (datatype, cluster_id)
        WHERE cluster_id IS NOT NULL;
    CREATE TABLE signatures (
        sample_id  INTEGER PRIMARY KEY REFERENCES samples(id),
        datatype   TEXT NOT NULL,
        signature  BLOB NOT NULL
    );
    CREATE INDEX signatures_by_type ON signatures (datatype);
    """,
    # 4: the decoded tokens a batch threw away (failed attempts, the cut-off tail of an answer
    # that stopped at num_predict), so waste can be measured against what was kept.
    """
    ALTER TABLE batches ADD COLUMN wasted_tokens INTEGER NOT NULL DEFAULT 0;
    """,
    # 5: the LSH band keys of the accepted samples' signatures: the near-duplicate index, on
    # disk and clustered by (datatype, key), so a check is one indexed lookup per band and a
    # restart rebuilds nothing.
    """
    CREATE TABLE lsh_bands (
        datatype   TEXT NOT NULL,
        key        INTEGER NOT NULL,
        sample_id  INTEGER NOT NULL,
        PRIMARY KEY (datatype, key, sample_id)
    ) WITHOUT ROWID;
    CREATE INDEX lsh_bands_by_sample ON lsh_bands (sample_id);
    """,
    # 6: which backend a run used, and whether it was a test double (the fake Ollama): its
    # samples are test data, left out of exports unless asked for.
    """
    ALTER TABLE runs ADD COLUMN backend TEXT;
    ALTER TABLE runs ADD COLUMN test_double INTEGER NOT NULL DEFAULT 0;
    """,
    # 7: the near-duplicate index moves into memory (rebuilt from the signatures at start: a
    # band key per band and sample written at every commit cost more than the rest of the
    # check). A sample is in the index when it is accepted and has a signature; index_log
    # tells a running service what other connections changed (a review, a flag, another
    # writer): the triggers append the id of every sample that gained, changed or lost a
    # signature, entered or left 'accepted' or was deleted, and the service replays the log's
    # tail before each commit.
    """
    DROP TABLE lsh_bands;
    DELETE FROM settings WHERE key = 'lsh_banding';
    CREATE TABLE index_log (
        seq        INTEGER PRIMARY KEY,
        sample_id  INTEGER NOT NULL
    );
    CREATE TRIGGER index_log_signed AFTER INSERT ON signatures
    BEGIN
        INSERT INTO index_log (sample_id) VALUES (new.sample_id);
    END;
    CREATE TRIGGER index_log_status AFTER UPDATE OF status ON samples
    WHEN (old.status = 'accepted') <> (new.status = 'accepted')
    BEGIN
        INSERT INTO index_log (sample_id) VALUES (new.id);
    END;
    CREATE TRIGGER index_log_resigned AFTER UPDATE OF signature ON signatures
    BEGIN
        INSERT INTO index_log (sample_id) VALUES (new.sample_id);
    END;
    CREATE TRIGGER index_log_unsigned AFTER DELETE ON signatures
    BEGIN
        INSERT INTO index_log (sample_id) VALUES (old.sample_id);
    END;
    CREATE TRIGGER index_log_deleted AFTER DELETE ON samples
    BEGIN
        INSERT INTO index_log (sample_id) VALUES (old.id);
    END;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
