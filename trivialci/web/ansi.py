"""A build log's terminal colours as HTML: SGR colours and bold become styled spans, every other escape goes.

Test runners colour their output (`ESC[31m` red, `ESC[1m` bold, `ESC[0m`
reset). A log line is turned into runs of (classes, text): the classes name
the SGR state (`b` bold, `i` italic, `u` underline, `f0`..`f15` foreground,
`g0`..`g15` background; 256-colour codes below 16 map there, others are
dropped), the text is what remains once every other control sequence (CSI,
OSC, other ESC sequences, C0/C1 controls but tab) is removed. The runs are
text: the templates escape them like any other value, and the CSP allows no
style attribute, so a colour is a class, never a style. The state starts
reset at each page of a log (a page may start in the middle of a colour).
"""

import re

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), other two-byte ESC sequences, 8-bit CSI; then lone controls.
SEQUENCE = re.compile(r"\x1b\[([0-9;:?<=>]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -/]*[0-~]?"
                      r"|\x9b[0-9;:?]*[ -/]*[@-~]")
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
MAX_CODES = 32  # SGR parameters read from one sequence; the rest are ignored


class Style:
    """The SGR state: bold, italic, underline, foreground and background colour numbers (0-15) or None."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.bold = self.italic = self.underline = False
        self.fg = self.bg = None

    def classes(self) -> str:
        names = [name for name, on in (("b", self.bold), ("i", self.italic), ("u", self.underline)) if on]
        names += [f"f{self.fg}"] if self.fg is not None else []
        names += [f"g{self.bg}"] if self.bg is not None else []
        return " ".join(names)

    def apply(self, params: str) -> None:
        codes = [int(p) if p.isdigit() else 0 for p in params.replace(":", ";").split(";")[:MAX_CODES]]
        index = 0
        while index < len(codes):
            index = self._one(codes, index)

    def _one(self, codes: list[int], index: int) -> int:
        """Apply the code at `index`; the index of the next one (38;5;N and 48;5;N take three)."""
        code = codes[index]
        if code in (38, 48):
            return self._extended(codes, index)
        if code == 0:
            self.reset()
        elif code in (1, 22):
            self.bold = code == 1
        elif code in (3, 23):
            self.italic = code == 3
        elif code in (4, 24):
            self.underline = code == 4
        elif 30 <= code <= 37 or 90 <= code <= 97:
            self.fg = code - 30 if code < 90 else code - 82
        elif 40 <= code <= 47 or 100 <= code <= 107:
            self.bg = code - 40 if code < 100 else code - 92
        elif code in (39, 49):
            setattr(self, "fg" if code == 39 else "bg", None)
        return index + 1

    def _extended(self, codes: list[int], index: int) -> int:
        """38;5;N (a 256-colour palette: only its first 16 are kept) or 38;2;R;G;B (dropped)."""
        mode = codes[index + 1] if index + 1 < len(codes) else None
        if mode == 5 and index + 2 < len(codes):
            if codes[index + 2] < 16:
                setattr(self, "fg" if codes[index] == 38 else "bg", codes[index + 2])
            return index + 3
        return index + 5 if mode == 2 else index + 2


def runs(line: str, style: Style) -> list[tuple[str, str]]:
    """`line` as (classes, text) runs, its escapes applied to `style` (which carries on to the next line)."""
    found, position = [], 0
    line = line.rstrip("\r")
    if "\r" in line:  # a progress bar redrawn in place: what the terminal showed last
        line = line[line.rindex("\r") + 1:]
    for match in SEQUENCE.finditer(line):
        _add(found, style.classes(), line[position:match.start()])
        if match.group(2) == "m":
            style.apply(match.group(1) or "0")
        position = match.end()
    _add(found, style.classes(), line[position:])
    return found


def _add(found: list, classes: str, text: str) -> None:
    text = CONTROLS.sub("", text.replace("\r", ""))
    if text:
        found.append((classes, text))


def plain(line: str) -> str:
    """The line without any escape or control: what a search or a copy should see."""
    return "".join(text for _, text in runs(line, Style()))
