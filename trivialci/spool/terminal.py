"""Text for a terminal: values from files and events, shown without driving the terminal.

A branch name, a state file, a store record, a heartbeat or an event file name
comes from whoever can push or write the spool. Printed raw, its escape
sequences (ESC [ ..., and the C1 controls such as U+009B that some terminals
obey too) could clear the screen, rewrite earlier lines or set the window
title, a newline could forge a log line, and bidi overrides (U+202A-U+202E,
U+2066-U+2069) could make `main` read as another branch. Every command's
output and every log line that shows such a value shows it through
`printable`: each character that is not printable (Unicode's control, format,
separator other than the space, surrogate, private-use and unassigned
characters) is written as its Python escape, `\\x1b`, `\\n`, `\\u202e`, so what a
person sees is what is there. A backslash is kept as it is, so that escaping
twice changes nothing (the output is for people; `--json` is for programs).
"""

import logging


def printable(value) -> str:
    """`value` as text that is safe to print on a terminal: non-printable characters as escapes."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class PrintableFormatter(logging.Formatter):
    """Log lines with every non-printable character of the message escaped: one event, one line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def formatException(self, exc_info) -> str:
        return "\n".join(printable(line) for line in super().formatException(exc_info).split("\n"))
