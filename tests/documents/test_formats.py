"""Issue 30 item 3: the formats people have. Markdown and HTML read as text with their headings
and tables kept; seed 001's own examples (its sentiment lines and its instruction block)
recognised as labelled examples and prompt and response pairs; prose that merely holds an
arrow stays prose."""

from tests.factories import write
from thunder_dagster.documents.ingest import ingest_agent, report_entries
from thunder_dagster.documents.labelled import is_labelled, read_labelled, seed_form
from thunder_dagster.documents.markup import extract_html, extract_markdown

MARKDOWN = b"""# Opening hours

The bakery opens at **nine** on [Sundays](http://example.org/sun).

| Day | Opens |
|-----|-------|
| Mon | 7:00 |
| Sun | 9:00 |

- rye
- spelt

```
oven: 230 C
```
"""

HTML = b"""<html><head><title>Hours</title><style>p { color: red }</style>
<script>var tracking = 1;</script></head><body>
<h1>Opening hours</h1><p>The bakery opens at <b>nine</b> on <a href="/sun">Sundays</a>.</p>
<!-- an editor's note --><table><tr><th>Day</th><th>Opens</th></tr>
<tr><td>Mon</td><td>7:00</td></tr></table><ul><li>rye</li><li>spelt</li></ul></body></html>"""

# Seed 001's examples, as the seed writes them.
SENTIMENT = """Classify customer sentiment:

1. "I love this product!" -> positive
2. "Not what I expected" -> negative
3. "It works fine" -> neutral
"""
INSTRUCTION = """Instruction following:

Task: Summarize the following text
Input: [long text here]
Expected: [short summary]
"""


def test_markdown_keeps_headings_paragraphs_tables_lists_and_code_as_text():
    extraction = extract_markdown(MARKDOWN)
    assert extraction.status == "ok"
    assert extraction.text == (
        "Opening hours\n\nThe bakery opens at nine on Sundays.\n\n"
        "Day | Opens\nMon | 7:00\nSun | 9:00\n\nrye\nspelt\noven: 230 C\n"
    )


def test_html_keeps_the_bodys_text_and_drops_scripts_styles_comments_and_addresses():
    extraction = extract_html(HTML)
    assert extraction.status == "ok"
    assert extraction.text == (
        "Opening hours\n\nThe bakery opens at nine on Sundays.\n\n"
        "Day | Opens\nMon | 7:00\n\nrye\nspelt\n"
    )
    assert extract_html(b"<html><body><script>x()</script></body></html>").status == "empty"


def test_seed_001s_sentiment_lines_and_instruction_block_are_examples(tmp_path):
    lines = write(tmp_path / "moods.txt", SENTIMENT)
    block = write(tmp_path / "tasks.txt", INSTRUCTION)
    assert is_labelled(lines) and is_labelled(block)
    moods = read_labelled(lines)
    assert moods.kind == "labelled" and moods.problems == []
    assert [(e.text, e.label, e.line) for e in moods.examples] == [
        ("I love this product!", "positive", 3),
        ("Not what I expected", "negative", 4),
        ("It works fine", "neutral", 5),
    ]
    tasks = read_labelled(block)
    assert tasks.kind == "pairs" and tasks.problems == []
    assert [(p.prompt, p.response) for p in tasks.examples] == [
        ("Summarize the following text\n\n[long text here]", "[short summary]")
    ]
    prose = 'The oven -> the rack. Then "proof" -> bake, as the recipe says.\nMore prose.'
    assert seed_form(prose) is None
    assert not is_labelled(write(tmp_path / "recipe.txt", prose))


def test_an_agents_markdown_html_and_seed_examples_are_ingested_each_as_it_is(home):
    agent = home.create_agent("shop")
    write(agent / "reference" / "hours.md", MARKDOWN)
    write(agent / "reference" / "hours.html", HTML)
    write(agent / "communication" / "moods.txt", SENTIMENT)
    result = ingest_agent(home, "shop", task="sentiment")
    entries = {entry["path"]: entry for entry in report_entries(result)}
    assert entries["reference/hours.md"]["status"] == "ok"
    assert entries["reference/hours.html"]["status"] == "ok"
    assert entries["communication/moods.txt"]["status"] == "labelled"
    assert entries["communication/moods.txt"]["examples"] == 3
