"""The Markdown table both benchmark scripts print."""


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    """Print ``title`` and a two-column Markdown table of ``(measure, value)`` rows."""
    print(f"\n{title}\n")
    width = max(len(name) for name, _ in rows)
    print(f"| {'measure':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
