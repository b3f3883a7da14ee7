"""A second kind of text for the quality benchmarks, built at run time from Python's own documentation.

`pydoc_data/topics.py` ships with every CPython: 79 topics of the Language and Library Reference as plain text
(the text `help("while")` prints), 465k characters (~110k WordPiece tokens), 1 to 30 sections per topic with
reStructuredText-style underlined headings. Technical reference prose with code, grammar and tables: a different
kind of text from SQuAD's encyclopaedia articles and the synthetic passkey filler.

The set: one document per topic (less the 22 topics whose text is a section of a longer topic), every heading and
its underline taken out of the text (replaced by a blank line), so a query cannot match a heading line verbatim.
One query per section whose own text (up to the next heading of any level) has at least MIN_BODY characters and
whose heading occurs once in the whole corpus; the query is the heading as written, preceded by its parent heading
for subsections ("The "match" statement: Guards"), quotes dropped. Gold: the section's own text span. Nothing is
paraphrased or written by hand, so the queries are as the documentation's authors named their sections: a topic
search, lexical in part (a heading's words usually recur in its section), over long documents (the 10 longest
topics hold 3k to 17k tokens; 161 queries, 57 documents, 99k tokens with Python 3.11).

The text is the Python Software Foundation's (PSF licence); it is read from the running interpreter, never copied
into the repository. Different Python versions ship different text: the set records `sys.version`.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import dataclass

import data as evaldata

MIN_BODY = 200
# A heading line followed by an underline of one repeated character of the heading's length. '+' and '|' lines
# are table borders, not headings.
_HEADING = re.compile(r"^(?![+|])(\S[^\n]*)\n([*=\-~^])\2{2,}\n", re.M)
_LEVELS = "*=-~^"


@dataclass(frozen=True)
class Section:
    topic: str
    heading: str
    level: int
    body: tuple[int, int]  # span in the cleaned document text


def _clean(topic_text: str) -> tuple[str, list[tuple[str, int, int]]]:
    """The topic without headings (each heading + underline becomes one blank line) and, per heading, (heading,
    level, position in the cleaned text where its body starts)."""
    out, marks, pos = [], [], 0
    for m in _HEADING.finditer(topic_text):
        if len(m.group(0).split("\n")[1]) != len(m.group(1).rstrip()):
            continue  # underline length differs: not a heading
        out.append(topic_text[pos : m.start()])
        out.append("\n")
        marks.append((m.group(1).strip(), _LEVELS.index(m.group(2)), sum(len(x) for x in out)))
        pos = m.end()
    out.append(topic_text[pos:])
    return "".join(out), marks


def _contained(text: str, others: list[str]) -> bool:
    """A topic whose text is a section of a longer topic (22 of 79: "while" is in "compound") is left out, or a
    hit on the copy would count as a miss."""
    body = text.strip()
    return any(len(o) > len(text) and body in o for o in others)


def _query(heading: str, parent: str | None) -> str:
    text = heading if parent is None else f"{parent}: {heading}"
    return text.replace('"', "")


def build(min_body: int = MIN_BODY) -> evaldata.EvalSet:
    from pydoc_data.topics import topics

    cleaned = {key: _clean(topics[key]) for key in sorted(topics)}
    docs, ids, sections = [], [], []
    for key, (text, marks) in cleaned.items():
        if _contained(text, [t for k, (t, _) in cleaned.items() if k != key]):
            continue
        ids.append(f"pydoc:{key}")
        docs.append(text)
        parents: dict[int, str] = {}
        for i, (heading, level, start) in enumerate(marks):
            end = marks[i + 1][2] if i + 1 < len(marks) else len(text)
            # the body starts after blank lines and ends before the blank lines that precede the next heading
            body = text[start:end]
            lo = start + len(body) - len(body.lstrip())
            hi = start + len(body.rstrip())
            parents = {k: v for k, v in parents.items() if k < level}
            parent = parents.get(max(parents)) if parents else None
            parents[level] = heading
            sections.append((len(docs) - 1, Section(key, _query(heading, parent), level, (lo, hi))))
    counts = Counter(s.heading for _, s in sections)
    queries, gold = [], []
    for doc, s in sections:
        if counts[s.heading] == 1 and s.body[1] - s.body[0] >= min_body:
            queries.append(s.heading)
            gold.append(evaldata.Gold(doc, s.body, s.body))
    return evaldata.EvalSet(f"pydoc-sections (Python {sys.version.split()[0]})", ids, docs, queries, gold)


if __name__ == "__main__":
    s = build()
    print(f"{s.name}: {len(s.docs)} documents, {sum(map(len, s.docs))} chars, {len(s.queries)} queries")
    for q, g in list(zip(s.queries, s.gold))[:12]:
        print(f"  {q!r} -> {s.doc_ids[g.doc]} {g.passage} {s.docs[g.doc][g.passage[0] : g.passage[0] + 60]!r}")
