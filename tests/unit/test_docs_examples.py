"""The parser and matcher of the docs' runnable examples (tests/docs_examples.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs_examples import DocFormatError, mismatch, parse, runnable_docs

DOC = """\
# Title

```console
$ not runnable: no marker
```

<!-- runnable -->
```console
$ headwater import-image hello:1.0 --from=$REGISTRY/examples/hello:1.0 \\
    --confirm --insecure
imagestream.image.headwater.dev/hello imported
... sha256:...
$ kubectl get is
$ echo done
done
```
"""


def test_parse_finds_the_steps_of_marked_blocks_only() -> None:
    steps = parse(DOC, "doc.md")
    assert [s.line for s in steps] == [9, 13, 14]
    first = steps[0]
    assert first.command == (
        "headwater import-image hello:1.0 --from=$REGISTRY/examples/hello:1.0 \\\n"
        "    --confirm --insecure"
    )
    assert first.expected == ("imagestream.image.headwater.dev/hello imported", "... sha256:...")
    assert steps[1].expected == ()
    assert steps[2].command == "echo done"
    assert first.where() == "doc.md:9"


@pytest.mark.parametrize(
    "text",
    [
        "<!-- runnable -->\n```sh\n$ x\n```\n",
        "<!-- runnable -->\n```console\n$ x\n",
        "<!-- runnable -->\n```console\nno command\n```\n",
        "<!-- runnable -->\n```console\n```\n",
    ],
)
def test_malformed_runnable_blocks_are_errors(text: str) -> None:
    with pytest.raises(DocFormatError):
        parse(text, "doc.md")


def test_expected_lines_match_in_order_with_ellipsis() -> None:
    output = "header\nweb   sha256:abcd  5s\nfooter\n"
    assert mismatch(("web   sha256:...  ...",), output) is None
    assert mismatch(("header", "footer"), output) is None
    assert mismatch(("footer", "header"), output) is not None
    assert mismatch(("web",), output) is not None  # a whole line, not a substring
    assert mismatch(("missing",), output) == (
        "the doc says it prints 'missing', which is not in the output (in this order)"
    )
    assert mismatch((), "") is None
    # Regex characters in a doc are literal.
    assert mismatch(("a.c",), "abc\n") is not None
    assert mismatch(("a.c",), "a.c\n") is None


def test_the_docs_that_have_runnable_examples_parse() -> None:
    docs = runnable_docs(Path(__file__).resolve().parents[2] / "docs")
    assert docs, "no doc under docs/ has a runnable example"
    for doc in docs:
        assert parse(doc.read_text(), doc.name)


def test_a_here_document_belongs_to_its_command() -> None:
    text = (
        "<!-- runnable -->\n```console\n"
        "$ kubectl apply -f - <<'EOF'\nkind: X\n$ not a command\nEOF\nx created\n"
        "$ cat <<EOF | wc -l\na\nEOF\n1\n```\n"
    )
    steps = parse(text, "doc.md")
    assert [s.command for s in steps] == [
        "kubectl apply -f - <<'EOF'\nkind: X\n$ not a command\nEOF",
        "cat <<EOF | wc -l\na\nEOF",
    ]
    assert [s.expected for s in steps] == [("x created",), ("1",)]
    with pytest.raises(DocFormatError):
        parse("<!-- runnable -->\n```console\n$ cat <<EOF\nno end\n```\n", "doc.md")
