"""Attributes replaced on modules and classes, and put back exactly as they were."""
_ABSENT = object()


class Patches:
    """A record of replaced attributes, undone in reverse order.

    `vars(owner)` is read rather than getattr, so an attribute a class only inherited is deleted
    again on undo() instead of being pinned on the subclass.
    """

    def __init__(self):
        self._saved = []

    def __bool__(self):
        return bool(self._saved)

    def set(self, owner, name, value):
        self._saved.append((owner, name, vars(owner).get(name, _ABSENT)))
        setattr(owner, name, value)

    def undo(self):
        while self._saved:
            owner, name, old = self._saved.pop()
            if old is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, old)
