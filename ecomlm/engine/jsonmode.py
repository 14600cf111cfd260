"""JSON mode: a character-level validator of JSON prefixes.

Constrained sampling feeds each candidate token's text to a copy of the
validator and rejects tokens that would make the output invalid, so what a
JSON-mode request returns always parses (``response_format={"type":
"json_object"}``). The top-level value must be an object, as OpenAI's JSON
mode promises.
"""

from __future__ import annotations

__all__ = ["JsonPrefix"]

_WS = " \t\n\r"
_HEX = "0123456789abcdefABCDEF"


class JsonPrefix:
    """Accepts exactly the prefixes of JSON texts whose top-level value is an
    object. ``feed(text)`` returns False (and leaves the state unusable) on
    the first character no JSON text could continue with."""

    __slots__ = ("stack", "mode", "lit", "esc", "num", "done", "max_depth")

    def __init__(self, max_depth: int = 64):
        # stack of containers: "{" or "["; mode says what comes next:
        # "value", "key" (object key or "}"), "colon", "after" (',' or close),
        # "string", "keystring", "number", "literal", "end"
        self.stack: list = []
        self.mode = "top"
        self.lit = ""      # rest of a literal being matched
        self.esc = 0       # 0 none, 1 after backslash, 2..5 hex digits left + 1
        self.num = ""      # number text so far
        self.done = False
        self.max_depth = max_depth

    def copy(self) -> "JsonPrefix":
        c = JsonPrefix.__new__(JsonPrefix)
        c.stack = list(self.stack)
        c.mode, c.lit, c.esc, c.num, c.done, c.max_depth = (self.mode, self.lit, self.esc, self.num,
                                                             self.done, self.max_depth)
        return c

    @property
    def complete(self) -> bool:
        return self.done

    def feed(self, text: str) -> bool:
        for ch in text:
            if not self._char(ch):
                return False
        return True

    # ------------------------------------------------------------------
    def _close_value(self) -> None:
        self.mode = "after" if self.stack else "end"
        if not self.stack:
            self.done = True

    def _start_value(self, ch: str) -> bool:
        if ch == "{" or ch == "[":
            if len(self.stack) >= self.max_depth:
                return False
            self.stack.append(ch)
            self.mode = "key0" if ch == "{" else "value0"
            return True
        if ch == '"':
            self.mode, self.esc = "string", 0
            return True
        if ch in "-0123456789":
            self.mode, self.num = "number", ch
            return True
        for lit in ("true", "false", "null"):
            if ch == lit[0]:
                self.mode, self.lit = "literal", lit[1:]
                return True
        return False

    def _number_ok(self, s: str) -> bool:
        """Is s a prefix of a JSON number?"""
        i, n = 0, len(s)
        if i < n and s[i] == "-":
            i += 1
        if i == n:
            return True
        if s[i] == "0":
            i += 1
        elif s[i].isdigit():
            while i < n and s[i] in "0123456789":
                i += 1
        else:
            return False
        if i < n and s[i] == ".":
            i += 1
            if i == n:
                return True
            if s[i] not in "0123456789":
                return False
            while i < n and s[i] in "0123456789":
                i += 1
        if i < n and s[i] in "eE":
            i += 1
            if i < n and s[i] in "+-":
                i += 1
            if i == n:
                return True
            if s[i] not in "0123456789":
                return False
            while i < n and s[i] in "0123456789":
                i += 1
        return i == n

    def _number_complete(self, s: str) -> bool:
        return self._number_ok(s) and s[-1] in "0123456789"

    def _char(self, ch: str) -> bool:
        m = self.mode
        if m in ("string", "keystring"):
            if self.esc == 1:
                if ch in '"\\/bfnrt':
                    self.esc = 0
                    return True
                if ch == "u":
                    self.esc = 5
                    return True
                return False
            if self.esc >= 2:
                if ch not in _HEX:
                    return False
                self.esc -= 1
                if self.esc == 1:
                    self.esc = 0
                return True
            if ch == "\\":
                self.esc = 1
                return True
            if ch == '"':
                if m == "keystring":
                    self.mode = "colon"
                else:
                    self._close_value()
                return True
            return ord(ch) >= 0x20
        if m == "literal":
            if self.lit and ch == self.lit[0]:
                self.lit = self.lit[1:]
                if not self.lit:
                    self._close_value()
                return True
            return False
        if m == "number":
            if self._number_ok(self.num + ch):
                self.num += ch
                return True
            if not self._number_complete(self.num):
                return False
            self._close_value()
            return self._char(ch)  # the character after a number
        if ch in _WS:
            return True
        if m == "top":
            if ch != "{":
                return False
            return self._start_value(ch)
        if m == "end":
            return False
        if m in ("key0", "key"):
            if ch == '"':
                self.mode, self.esc = "keystring", 0
                return True
            if m == "key0" and ch == "}":
                self.stack.pop()
                self._close_value()
                return True
            return False
        if m == "colon":
            if ch == ":":
                self.mode = "value"
                return True
            return False
        if m in ("value", "value0"):
            if m == "value0" and ch == "]":
                self.stack.pop()
                self._close_value()
                return True
            return self._start_value(ch)
        if m == "after":
            top = self.stack[-1]
            if ch == ",":
                self.mode = "key" if top == "{" else "value"
                return True
            if (ch == "}" and top == "{") or (ch == "]" and top == "["):
                self.stack.pop()
                self._close_value()
                return True
            return False
        return False
