"""Filler text: the word list the fake writes prose from, token counts and timestamps."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

_WORD_TEXT = """
able about above account across act action active actual add address after again against age
agree air allow almost alone along already also always amount animal answer any appear apple
area argue arm around arrive art article ask attention autumn available avoid away baby back bag
balance ball bank base basket beach bear beautiful become bed before begin behind believe bell
below benefit best better between bicycle big bird birthday bit black blanket blue board boat
body book bottle bottom box branch bread break bridge bright bring brother brown build burn busy
butter button buy cake call calm camera candle capital car card care carry case castle cat catch
cause center chair chance change cheap check cheese child choice choose circle city class clean
clear climb clock close cloud coast coffee cold collect color come common compare complete
concern consider contain continue cook cool copy corner correct cost cotton count country course
cover cream create cross crowd cup curtain cut daily dance danger dark daughter day deal decide
deep degree deliver depend describe desk detail develop different dinner direct discover dish
distance doctor dog door double down draw dream dress drink drive drop dry during early earth
east easy eat edge effect egg eight either else empty end energy engine enjoy enough enter equal
evening event every exact example exchange exercise expect experience explain face fact fair
fall family famous far farm fast father feather feel field figure fill final find fine finger
finish fire first fish flat floor flower fly follow food foot forest forget fork form forward
free fresh friend front fruit full fun garden gate gather gentle gift give glass global go gold
good grain grass great green ground group grow guess guide hair half hall hand happen happy
harbor hard hat head health hear heart heavy help high hill history hold holiday home honest
hope horse hospital hot hour house huge idea important inch include increase inside iron island
job join journey judge juice jump keep kettle key kind kitchen knife know ladder lake lamp land
language large last late laugh lead learn leave left lemon letter level library light limit line
listen little live long look loud love low lunch machine main make manage map market match meal
measure meet memory metal middle milk mind minute mirror modern moment money month moon morning
mountain move music name narrow nation nature near neck need nest never new news next night
noise north note notice number ocean offer office often oil old open orange order other outside
paint paper parent park part pass path pattern pay peace pencil people pepper perfect picture
piece place plan plant plate play pocket point polite pool poor possible post pot powder power
present pretty price print problem produce public pull purple push question quick quiet rain
reach read ready reason record red remember repair report rest result rice rich ride right ring
river road rock roof room root round rule run safe salt same sand save school science sea season
seat second see seed sell send sense serve shade shape share sharp sheep shelf shell ship shirt
shoe shop short show side sign silver simple sing sister sit size skill sky sleep slow small
smile smooth snow soft soil solid song sound soup south space speak special spoon spring square
stage stair stamp star start station stay steam step stick stone store story straight street
strong student study sugar summer sun supply support sweet swim table tail take talk tall taste
teacher team tell test thank thick thin thing think thread through thumb ticket tidy time tired
today together tomorrow tool tooth top touch towel tower town toy track trade train travel tree
trip true try turn umbrella under uniform unit until upper useful valley value vegetable village
visit voice wait walk wall warm wash watch water wave way weather week weight west wheel white
whole wide wind window winter wise wish wood word work world write yard year yellow young zone
"""
WORDS = tuple(_WORD_TEXT.split())


def words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(count))


def sentences(rng: random.Random, min_words: int, max_words: int) -> str:
    """Prose of roughly ``min_words``..``max_words`` words in sentences of 5-14 words."""
    target = rng.randint(min_words, max_words)
    out: list[str] = []
    written = 0
    while written < target:
        n = min(rng.randint(5, 14), max(target - written, 3))
        sentence = words(rng, n)
        out.append(sentence[0].upper() + sentence[1:] + ".")
        written += n
    return " ".join(out)


def iso(ts: float) -> str:
    """RFC 3339 in UTC with microseconds, as Ollama writes ``created_at``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def tokens(text: str) -> int:
    """Simulated token count: one token per four characters."""
    return math.ceil(len(text) / 4)


def sentence(rng: random.Random, min_words: int, max_words: int) -> str:
    """One capitalised sentence of ``min_words``..``max_words`` words."""
    text = words(rng, rng.randint(min_words, max_words))
    return text[0].upper() + text[1:] + "."
