"""Benchmarks: each prints a table and writes a JSON report under ``build/bench``."""


def parse_list(text, allowed, what, convert=str):
    """The comma-separated items of a command-line option, each checked against ``allowed``.

    Raises
    ------
    ValueError
        Naming the first unknown item and the choices.
    """
    items = []
    for word in (x.strip() for x in text.split(",")):
        if not word:
            continue
        try:
            item = convert(word)
        except ValueError:
            item = None
        if item not in allowed:
            raise ValueError(f"unknown {what} {word!r}; choose from "
                             f"{', '.join(map(str, allowed))}")
        items.append(item)
    return items
