"""The html listing of `anystore serve`: one folder of a store for people, plain HTML and CSS."""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from anystore_cli.util.text import human_size

STYLE = """
:root { color-scheme: light dark; --line: #d0d7de; --muted: #57606a; --accent: #0969da; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; padding: 1.5rem 2rem; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: .5rem 1.5rem; margin-bottom: 1rem; }
h1 { font-size: 1.25rem; margin: 0; font-weight: 600; }
h1 a, nav a, td a { color: var(--accent); text-decoration: none; }
h1 a:hover, nav a:hover, td a:hover { text-decoration: underline; }
.store { color: var(--muted); font-family: ui-monospace, monospace; font-size: .85rem; }
form { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; margin: 0 0 1rem;
       padding: .75rem; border: 1px solid var(--line); border-radius: 6px; }
label { display: flex; flex-direction: column; font-size: .8rem; color: var(--muted); }
input { font: inherit; padding: .25rem .4rem; border: 1px solid var(--line); border-radius: 4px; min-width: 10rem; }
input[type=number] { min-width: 5rem; width: 5rem; }
button { font: inherit; padding: .3rem .9rem; border-radius: 4px; border: 1px solid var(--line); cursor: pointer; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line); }
th { font-size: .8rem; text-transform: uppercase; letter-spacing: .03em; color: var(--muted); }
td.size, th.size { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.time { font-variant-numeric: tabular-nums; white-space: nowrap; color: var(--muted); }
td.name { word-break: break-all; }
a.folder { font-weight: 600; }
nav.pages { display: flex; gap: 1rem; align-items: center; margin-top: 1rem; color: var(--muted); }
.empty { color: var(--muted); padding: 1rem 0; }
footer { margin-top: 1.5rem; font-size: .8rem; color: var(--muted); }
"""


def href(key: str, params: dict[str, Any] | None = None) -> str:
    """The server url of a key or folder, percent-encoded, with query parameters."""
    url = "/" + quote(key, safe="/")
    query = {k: v for k, v in (params or {}).items() if v not in (None, "")}
    return url + ("?" + urlencode(query) if query else "")


def show_time(value: datetime | None) -> str:
    """A timestamp in UTC to the second."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.astimezone()
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_page(
    store_label: str,
    base: str,
    records: list[dict[str, Any]],
    limit: int,
    after: str = "",
    next_after: str | None = None,
    glob: str = "",
    prefix: str = "",
    writable: bool = False,
    origin: str = "",
) -> str:
    """The html page of one folder: breadcrumbs, a filter form, the entries and page links
    (`next_after`: the name the next page starts after, None on the last page)."""
    filters = {"glob": glob, "prefix": prefix, "limit": limit if limit != 100 else None}
    crumbs = [f'<a href="{escape(href(""))}">/</a>']
    parts = [p for p in base.split("/") if p]
    for index, part in enumerate(parts):
        crumbs.append(f'<a href="{escape(href("/".join(parts[: index + 1]) + "/"))}">{escape(part)}/</a>')
    rows = []
    if base:
        parent = "/".join(parts[:-1])
        rows.append(
            f'<tr><td class="name"><a class="folder" href="{escape(href(parent + "/" if parent else ""))}">..</a></td>'
            '<td class="size"></td><td class="time"></td></tr>'
        )
    for record in records:
        name = escape(record["name"] + ("/" if record["folder"] else ""))
        if record["folder"]:
            link = href(record["key"] + "/")
            rows.append(
                f'<tr><td class="name"><a class="folder" href="{escape(link)}">{name}</a></td>'
                '<td class="size">folder</td><td class="time"></td></tr>'
            )
        else:
            link = href(record["key"])
            # text, JSON and images open in the browser (served as inert types); the rest downloads
            opens = "" if record.get("inline") else " download"
            rows.append(
                f'<tr><td class="name"><a class="file" href="{escape(link)}"{opens}>{name}</a></td>'
                f'<td class="size" title="{record.get("size", "")} bytes">{escape(human_size(record.get("size")))}</td>'
                f'<td class="time">{escape(show_time(record.get("updated_at")))}</td></tr>'
            )
    nav = []
    if after:
        nav.append(f'<a rel="first" href="{escape(href(base, filters))}">&larr; first page</a>')
    shown = len([r for r in records if r["name"] != ".."])
    nav.append(f"<span>{shown} entr{'y' if shown == 1 else 'ies'}{' after ' + escape(after) if after else ''}</span>")
    if next_after is not None:
        nav.append(f'<a rel="next" href="{escape(href(base, {**filters, "after": next_after}))}">next &rarr;</a>')
    empty = "" if records else '<p class="empty">Nothing here matches.</p>'
    title = escape("/" + base)
    mode = "writable (bearer token)" if writable else "read-only"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} &middot; anystore</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>{"".join(crumbs)}</h1>
<span class="store">{escape(store_label)} &middot; {mode}</span>
</header>
<form method="get" action="{escape(href(base))}">
<label>name starts with<input name="prefix" value="{escape(prefix)}" placeholder="report-"></label>
<label>glob<input name="glob" value="{escape(glob)}" placeholder="**/*.json"></label>
<label>per page<input type="number" name="limit" min="1" max="1000" value="{limit}"></label>
<button type="submit">Filter</button>
</form>
<table>
<thead><tr><th>name</th><th class="size">size</th><th>updated</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
{empty}
<nav class="pages">{" ".join(nav)}</nav>
<footer>Served by <code>anystore serve</code>. Scripts: <code>curl {escape(origin + href(base))}</code> lists
the keys, one a line; with <code>-H 'Accept: application/json'</code> as JSON.</footer>
</body>
</html>
"""
