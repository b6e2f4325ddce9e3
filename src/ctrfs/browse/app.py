"""The Textual app of ``ctrfs browse`` (imported only by that command: Textual is heavy).

Slow work runs in thread workers so the screen never waits: directory loads, the size of the
highlighted directory (cancelled when the cursor moves on), the preview, the diff marks, the
layers panel, grep, copy and follow. Workers hand results to the UI with ``call_from_thread``.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.style import Style
from rich.syntax import Syntax
from rich.text import Span, Text, TextType
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Header, Input, Label, Log, Static, Tree
from textual.widgets._tree import TOGGLE_STYLE
from textual.widgets.tree import TreeNode
from textual.worker import get_current_worker

from ctrfs.browse.model import (
    PREVIEW_BYTES,
    Listing,
    Preview,
    Row,
    Session,
    deleted_row,
    hexdump,
    human,
    name_matcher,
)
from ctrfs.cli.common import escape
from ctrfs.errors import CtrfsError, ProcessGone
from ctrfs.ops.content import GrepFile
from ctrfs.rootfs.base import base_name

KEYS = """\
Keys
  arrows, enter    move, expand or collapse a directory (the mouse works too)
  f                follow the selected file (tail -F); f again or esc stops
  /                filter entries by name (glob or substring; directories stay); empty clears
  g                grep below the selected directory (a regular expression)
  c                copy the selection out to a host path (as `ctrfs cp`)
  w                which layer provides the selection, and what it shadows
  layers panel     pick a layer to list only what it adds (A), changes (C), deletes (D)
  esc              back to the tree from a layer or grep list; close a prompt
  ?                this help
  q                quit

Marks: A added, C changed, D deleted by the container (as `docker diff`).
Layer: where the visible version comes from (upper, init, L<n> with 0 the top).
Nothing is ever written inside the container."""

DU_DELAY = 0.3  # seconds the cursor rests on a directory before its size is measured
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_MARK_STYLE = {"A": "bold green", "C": "bold yellow", "D": "bold red"}


def clean(text: str) -> str:
    """File content for the terminal: control characters (escape sequences) shown as \\xNN."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _shown(name: str) -> str:
    """escape(), with the common case (printable, no backslash) answered without work."""
    return name if name.isprintable() and "\\" not in name else escape(name)


@functools.lru_cache(maxsize=1024)
def _owner(user: str, group: str) -> str:
    return f"{escape(user)}:{escape(group)}"


def row_label(row: Row, session: Session, size: int | None = None) -> Text:
    """``M NAME[ -> TARGET]  LAYER MODE OWNER:GROUP SIZE`` for one tree line: the name first,
    so that it shows on a narrow terminal too. Built as one string with spans (a directory of
    10,000 entries makes 10,000 of these at once; ``Text.append`` would take a second)."""
    name = _shown(row.name)
    link = f" -> {_shown(row.link)}" if row.link is not None else ""
    layer = "mnt" if row.mount_point else session.layer_label(row.layer)
    owner = _owner(row.user, row.group) if row.user else ""
    shown = size if size is not None else (row.size if not row.is_dir else None)
    amount = human(shown) if shown is not None or row.is_dir else ""
    head = f"{row.mark or ' '} "
    pad = " " * max(2, 24 - len(name) - len(link))
    meta = f"{layer:<5} {row.mode} {owner:<12} {amount:>7}"
    plain = head + name + link + pad + meta
    spans = []
    if row.mark:
        spans.append(Span(0, 1, _MARK_STYLE[row.mark]))
    n0 = len(head)
    style = "bold blue" if row.is_dir else ("strike red" if row.deleted else "")
    if style:
        spans.append(Span(n0, n0 + len(name), style))
    if link:
        spans.append(Span(n0 + len(name), n0 + len(name) + len(link), "magenta"))
    m0 = n0 + len(name) + len(link) + len(pad)
    spans.append(Span(m0, m0 + 5, "cyan"))
    spans.append(Span(m0 + 6, m0 + 6 + len(row.mode) + 1 + 12, "dim"))
    return Text(plain, spans=spans, no_wrap=True, overflow="ellipsis")


_META_WIDTH = 5 + 1 + 10 + 1 + 12 + 1 + 7  # layer, mode, owner, size columns of row_label


def label_width(row: Row) -> int:
    """The cells ``row_label`` takes (names of wide characters counted as one cell each)."""
    name = len(row.name) + (len(row.link) + 4 if row.link is not None else 0)
    owner = len(row.user) + len(row.group) + 1 if row.user else 0
    return 2 + max(name + 2, 24) + _META_WIDTH + max(0, owner - 12)


class FsTree(Tree[Row]):
    """The filesystem tree, tuned for big directories (textual.widgets.Tree as of Textual 8).

    A node's label is drawn from its Row when its line is shown (a directory of 10,000 entries
    would otherwise build 10,000 Rich Texts up front), so marks and sizes that arrive later
    show by a refresh; widths come from the Row; :meth:`bulk` adds many children with one
    invalidation instead of one per child."""

    _bulk = False
    _bulk_dirty = False

    def __init__(self, session: Session, sizes: dict[str, int], root: Row, **kwargs: Any) -> None:
        self.session = session
        self.sizes = sizes
        super().__init__(Text(""), data=root, **kwargs)

    def process_label(self, label: TextType) -> Text:
        return label if isinstance(label, Text) else Text(label)  # never markup: file names

    def label_of(self, node: TreeNode[Row]) -> Text:
        row = node.data
        if row is None:
            return node._label
        return row_label(row, self.session, self.sizes.get(row.path))

    def render_label(self, node: TreeNode[Row], base_style: Style, style: Style) -> Text:
        label = self.label_of(node)
        label.stylize(style)
        if node._allow_expand:
            icon = self.ICON_NODE_EXPANDED if node.is_expanded else self.ICON_NODE
            return Text.assemble((icon, base_style + TOGGLE_STYLE), label)
        return label

    def get_label_width(self, node: TreeNode[Row]) -> int:
        row = node.data
        width = label_width(row) if row is not None else node._label.cell_len
        return width + (len(self.ICON_NODE) if node._allow_expand else 0)

    def _invalidate(self) -> None:
        if self._bulk:
            self._bulk_dirty = True
            return
        super()._invalidate()

    @contextmanager
    def bulk(self) -> Iterator[None]:
        self._bulk, self._bulk_dirty = True, False
        try:
            yield
        finally:
            self._bulk = False
            if self._bulk_dirty:
                self._invalidate()

    def redraw(self) -> None:
        """Labels changed (marks, sizes): draw the lines again."""
        self._invalidate()


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,enter", "dismiss", "close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    #help { width: auto; max-width: 100; height: auto; border: round $accent; padding: 1 2;
            background: $surface; }
    """

    def compose(self) -> ComposeResult:
        yield Static(KEYS, id="help", markup=False)

    def on_click(self) -> None:
        self.dismiss()


class BrowseApp(App[int]):
    TITLE = "ctrfs browse"
    CSS = """
    #main { height: 1fr; }
    #left { width: 3fr; }
    #right { width: 2fr; border-left: solid $accent; }
    #tree { height: 1fr; }
    #list { height: 1fr; display: none; }
    #listtitle { display: none; background: $boost; width: 100%; }
    #layerstitle { background: $boost; width: 100%; }
    #layers { height: auto; max-height: 30%; }
    #info { height: auto; max-height: 6; background: $boost; width: 100%; }
    #banner { display: none; background: $error; color: $text; width: 100%; }
    #previewbox { height: 1fr; }
    #follow { height: 1fr; display: none; }
    #prompt { dock: bottom; display: none; }
    """
    BINDINGS = [
        Binding("f", "follow", "follow"),
        Binding("slash", "filter", "filter"),
        Binding("g", "grep", "grep"),
        Binding("c", "copy", "copy out"),
        Binding("w", "which", "which"),
        Binding("question_mark", "help", "help"),
        Binding("escape", "leave", "back", show=False),
        Binding("q", "quit_browse", "quit"),
    ]

    def __init__(self, session: Session, start: str = "/") -> None:
        super().__init__()
        self.session = session
        self.start = start
        self.pattern = ""
        self.selected: Row | None = None
        self.preview_text = ""  # what the preview pane shows, as plain text
        self.info_text = ""
        self.following: str | None = None
        self.list_mode = ""  # "layer" or "grep" while #list replaces the tree
        self.list_rows: list[Row | None] = []
        self.loaded: set[int] = set()  # ids of the tree nodes whose directory was listed
        self.loading: set[int] = set()  # ... or is being listed
        self.listings: dict[int, Listing] = {}  # node id → its directory's rows (unfiltered)
        self._started = False
        self.sizes: dict[str, int] = {}
        self._prompt_action: Any = None
        self._gone_shown = False

    # -- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="banner", markup=False)
        with Horizontal(id="main"):
            with Vertical(id="left"):
                root = self.session.row(self.start)
                tree = FsTree(self.session, self.sizes, root, id="tree")
                tree.show_root = True
                yield tree
                yield Label("", id="listtitle", markup=False)
                yield DataTable(id="list", cursor_type="row", zebra_stripes=True)
                yield Label("layers: loading…", id="layerstitle", markup=False)
                yield DataTable(id="layers", cursor_type="row")
            with Vertical(id="right"):
                yield Static("", id="info", markup=False)
                with VerticalScroll(id="previewbox"):
                    yield Static("", id="preview", markup=False)
                yield Log(id="follow", max_lines=5000)
        yield Input(id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "ctrfs browse"
        self.sub_title = self.session.title
        tree = self.query_one("#tree", Tree)
        tree.root.expand()  # lists it (on_tree_node_expanded); marks and layers come after
        tree.focus()
        self.set_interval(1.0, self._check_alive)

    # -- container state ------------------------------------------------------------------
    def _check_alive(self) -> None:
        if not self.session.check_alive():
            self._show_gone()

    def _show_gone(self) -> None:
        if self._gone_shown:
            return
        self._gone_shown = True
        banner = self.query_one("#banner", Static)
        banner.update(f"The container stopped ({self.session.gone}); showing what was read "
                      "before it did.")
        banner.display = True
        self.sub_title = self.session.title.replace("running", "STOPPED")

    def _fail(self, err: CtrfsError) -> None:
        if isinstance(err, ProcessGone):
            self.session.gone = self.session.gone or str(err)
            self._show_gone()
        else:
            self.notify(escape(str(err)), severity="error", markup=False)

    # -- the tree -------------------------------------------------------------------------
    @work(thread=True, group="load")
    def load_dir(self, node: TreeNode[Row]) -> None:
        row = node.data
        assert row is not None
        in_layers = not self._on_other_mount(node)
        try:
            listing = self.session.list_dir(row.path, in_layers=in_layers)
        except CtrfsError as err:
            self.call_from_thread(self._failed_listing, node, err)
            return
        self.call_from_thread(self._fill, node, listing)

    def _failed_listing(self, node: TreeNode[Row], err: CtrfsError) -> None:
        self.loading.discard(id(node))
        self._fail(err)

    @staticmethod
    def _on_other_mount(node: TreeNode[Row]) -> bool:
        n: TreeNode[Row] | None = node
        while n is not None:
            if n.data is not None and n.data.mount_point:
                return True
            n = n.parent
        return False

    def _fill(self, node: TreeNode[Row], listing: Listing) -> None:
        self.listings[id(node)] = listing
        self._show_children(node, listing)
        self.loading.discard(id(node))
        self.loaded.add(id(node))
        row = self.selected
        if row is not None and row.is_dir and row.path not in self.sizes and not self.loading:
            self._measure_later(row, self._cursor_node())
        if not self._started:  # the first screen is up: now the slower facts
            self._started = True
            self.load_marks()
            self.load_layers()

    def _show_children(self, node: TreeNode[Row], listing: Listing) -> None:
        """(Re)add the non-directory children the filter keeps; directories always stay
        (with what is open below them), to descend into."""
        tree = self.query_one("#tree", FsTree)
        match = name_matcher(self.pattern)
        blank = Text("")
        with tree.bulk():
            have_dirs = False
            for child in list(node.children):
                if child.data is not None and child.data.is_dir:
                    have_dirs = True
                else:
                    child.remove()
            for row in listing.rows:
                if row.is_dir:
                    if not have_dirs:
                        node.add(blank, data=row, allow_expand=True)
                elif match is None or match(row.name):
                    node.add(blank, data=row, allow_expand=False)
            if listing.more:
                node.add_leaf(Text(f"… {listing.more} more entries not shown", style="dim"))

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Row]) -> None:
        self._list(event.node)

    def _list(self, node: TreeNode[Row]) -> None:
        key = id(node)
        if key not in self.loaded and key not in self.loading and node.data is not None:
            self.loading.add(key)
            # the listing first: a size walk of the same directory would only slow it down
            self.workers.cancel_group(self, "du")
            self.load_dir(node)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[Row]) -> None:
        self._select(event.node.data, event.node)

    def _select(self, row: Row | None, node: TreeNode[Row] | None = None) -> None:
        self.selected = row
        if row is None:
            return
        if self.following and self.following != row.path:
            self._stop_follow()
        self._show_info(row)
        if row.deleted:
            self._set_preview(f"{row.path}: deleted by the container (D); nothing to show")
            return
        if row.is_dir:
            self._set_preview(f"{row.path}: directory")
            self._measure_later(row, node)
        else:
            self.workers.cancel_group(self, "du")
            self.show_preview(row.path)

    def _show_info(self, row: Row, size: int | None = None) -> None:
        parts = [escape(row.path)]
        kind = {"d": "directory", "f": "file", "l": "symlink", "p": "fifo", "s": "socket",
                "c": "char device", "b": "block device", "-": "deleted"}.get(row.type, row.type)
        detail = f"{kind}  {row.mode}  {escape(row.user)}:{escape(row.group)}"
        if row.is_dir:
            got = size if size is not None else self.sizes.get(row.path)
            detail += f"  {human(got)} below" if got is not None else "  size: measuring…"
        else:
            detail += f"  {human(row.size)}"
        parts.append(detail)
        where = []
        if row.mark:
            where.append({"A": "added", "C": "changed", "D": "deleted"}[row.mark]
                         + " by the container")
        if row.mount_point:
            where.append("a mount point (not from the layers)")
        elif row.layer is not None:
            where.append(f"from layer {self.session.layer_label(row.layer)}")
        if where:
            parts.append(", ".join(where))
        self.info_text = "\n".join(parts)
        self.query_one("#info", Static).update(self.info_text)

    def _measure_later(self, row: Row, node: TreeNode[Row] | None) -> None:
        """Measure ``row``'s size once the cursor rests there (not for every directory it
        passes over) and no directory is being listed."""
        self.workers.cancel_group(self, "du")
        self.set_timer(DU_DELAY, lambda: self.measure(row, node)
                       if self.selected is row and not self.loading else None)

    def _cursor_node(self) -> TreeNode[Row] | None:
        tree = self.query_one("#tree", FsTree)
        return tree.cursor_node if tree.display else None

    @work(thread=True, exclusive=True, group="du")
    def measure(self, row: Row, node: TreeNode[Row] | None) -> None:
        worker = get_current_worker()
        try:
            size = self.session.dir_size(row.path, lambda: worker.is_cancelled)
        except CtrfsError as err:
            self.call_from_thread(self._fail, err)
            return
        if size is not None and not worker.is_cancelled:
            self.call_from_thread(self._sized, row, node, size)

    def _sized(self, row: Row, node: TreeNode[Row] | None, size: int) -> None:
        self.sizes[row.path] = size
        if node is not None:
            node.refresh()
        if self.selected is row:
            self._show_info(row, size)

    # -- preview --------------------------------------------------------------------------
    def _set_preview(self, text: str, renderable: Any = None) -> None:
        self.preview_text = text
        self.query_one("#preview", Static).update(renderable if renderable is not None
                                                  else Text(text))
        self.query_one("#previewbox").display = True
        self.query_one("#follow").display = False

    @work(thread=True, exclusive=True, group="preview")
    def show_preview(self, path: str) -> None:
        p = self.session.preview(path)
        if not get_current_worker().is_cancelled:
            self.call_from_thread(self._previewed, p)

    def _previewed(self, p: Preview) -> None:
        if self.selected is None or self.selected.path != p.path:
            return
        head = ""
        if p.truncated:
            head = f"first {PREVIEW_BYTES >> 10} KiB of {human(p.size)}\n"
        if p.kind == "text":
            code = clean(p.data.decode("utf-8", "replace"))
            lexer = Syntax.guess_lexer(p.path, code)
            syntax = Syntax(code, lexer, line_numbers=True, word_wrap=False, theme="ansi_dark")
            self._set_preview(head + code, syntax if not head else None)
        elif p.kind == "binary":
            dump = hexdump(p.data[:4096])
            more = "" if len(p.data) <= 4096 and not p.truncated else "\n…"
            self._set_preview(f"binary file, {human(p.size)}\n{head}{dump}{more}")
        else:
            self._set_preview(f"{p.path}: {p.message}")

    # -- follow ---------------------------------------------------------------------------
    def action_follow(self) -> None:
        row = self.selected
        if self.following:
            self._stop_follow()
            if row is not None and not row.is_dir:
                self.show_preview(row.path)
            return
        if row is None or row.is_dir or row.deleted:
            self.notify("select a file to follow", severity="warning")
            return
        if not self.session.container.running or self.session.gone:
            self.notify("the container is not running: its files do not grow", severity="warning")
            return
        log = self.query_one("#follow", Log)
        log.clear()
        log.write_line(f"following {escape(row.path)} (f or esc stops)")
        self.query_one("#previewbox").display = False
        log.display = True
        self.following = row.path
        self.preview_text = ""
        self.follow(row.path)

    @work(thread=True, exclusive=True, group="follow")
    def follow(self, path: str) -> None:
        worker = get_current_worker()
        stop = lambda: worker.is_cancelled or self.following != path  # noqa: E731
        try:
            for ev in self.session.follow(path, stop):
                if stop():
                    return
                data = getattr(ev, "data", None)
                text = (clean(data.decode("utf-8", "replace")) if data is not None
                        else f"[{ev.message}]\n")  # type: ignore[union-attr]
                self.call_from_thread(self._followed, path, text)
        except CtrfsError as err:
            self.call_from_thread(self._fail, err)

    def _followed(self, path: str, text: str) -> None:
        if self.following != path:
            return
        self.preview_text += text
        self.query_one("#follow", Log).write(text)

    def _stop_follow(self) -> None:
        self.following = None
        self.workers.cancel_group(self, "follow")

    # -- layers ---------------------------------------------------------------------------
    @work(thread=True, group="marks")
    def load_marks(self) -> None:
        try:
            n = self.session.load_marks()
        except CtrfsError as err:
            self.call_from_thread(self._fail, err)
            return
        if n:
            self.call_from_thread(self._relabel)

    def _relabel(self) -> None:
        """Marks arrived after the first listings: redraw the loaded rows."""
        tree = self.query_one("#tree", FsTree)
        stack = [tree.root]
        marks = self.session.marks
        while stack:
            node = stack.pop()
            for child in node.children:
                row = child.data
                if row is not None:
                    row.mark = marks.get(row.path, "")
                stack.append(child)
        tree.redraw()
        for node in list(self._loaded_nodes(tree)):
            self._add_deleted(node)
        if self.selected is not None:
            self._show_info(self.selected)

    def _loaded_nodes(self, tree: Tree[Row]) -> list[TreeNode[Row]]:
        out, stack = [], [tree.root]
        while stack:
            node = stack.pop()
            if id(node) in self.loaded:
                out.append(node)
            stack.extend(node.children)
        return out

    def _add_deleted(self, node: TreeNode[Row]) -> None:
        listing = self.listings.get(id(node))
        if node.data is None or listing is None:
            return
        have = {r.path for r in listing.rows}
        new = [deleted_row(ch) for ch in self.session.deleted.get(node.data.path, [])
               if ch.path not in have]
        if new:
            listing.rows.extend(new)
            self._show_children(node, listing)

    @work(thread=True, group="layers")
    def load_layers(self) -> None:
        try:
            rows = self.session.layer_rows()
        except CtrfsError as err:
            self.call_from_thread(self._fail, err)
            rows = []
        self.call_from_thread(self._layers_loaded, rows)

    def _layers_loaded(self, rows: list[Any]) -> None:
        title = self.query_one("#layerstitle", Label)
        table = self.query_one("#layers", DataTable)
        table.clear(columns=True)
        if not rows:
            title.update("layers: none (the root filesystem is not an overlay)")
            table.display = False
            return
        stack = self.session.stack
        wasted = stack.wasted if stack is not None else None
        title.update(f"layers (top first): {len(rows)}, wasted space {human(wasted or 0)} "
                     "(enter: list a layer's files)")
        table.add_columns("#", "layer", "files", "size", "wasted", "A", "C", "D")
        table.add_row("*", "all (merged view)", "", "", "", "", "", "", key="all")
        for r in rows:
            la, s = r.layer, r.summary
            table.add_row(str(la.index), self.session.layer_label(la.index) + f" {la.label}"
                          if la.role == "image" else la.label,
                          str(la.files or 0), human(la.size or 0), human(la.wasted or 0),
                          str(s.added), str(s.changed), str(s.deleted), key=str(la.index))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "layers":
            key = event.row_key.value
            if key == "all" or key is None:
                self.action_leave()
            else:
                self.show_layer(int(key))
        elif event.data_table.id == "list":
            self._list_select(event.cursor_row)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "list":
            self._list_select(event.cursor_row)

    def _list_select(self, index: int) -> None:
        if 0 <= index < len(self.list_rows):
            self._select(self.list_rows[index])

    @work(thread=True, exclusive=True, group="list")
    def show_layer(self, index: int) -> None:
        try:
            files = self.session.layer_files(index)
        except CtrfsError as err:
            self.call_from_thread(self._fail, err)
            return
        self.call_from_thread(self._layer_listed, index, files)

    def _layer_listed(self, index: int, files: list[Any]) -> None:
        table = self._open_list("layer", f"layer {self.session.layer_label(index)}: "
                                f"{len(files)} changes (esc: back to the tree)")
        table.add_columns("", "path", "type", "size")
        for f in files:
            row = Row(path=f.path, name=os.path.basename(f.path) or "/",
                      type="-" if f.kind == "D" else ("d" if f.type == "dir" else "f"),
                      mode="", user="", group="", size=f.size or 0, mark=f.kind,
                      layer=index)
            self.list_rows.append(row)
            table.add_row(Text(f.kind, style=_MARK_STYLE[f.kind]), Text(escape(f.path)),
                          f.type + (" (opaque)" if f.opaque else ""),
                          human(f.size) if f.size is not None else "")
        table.focus()

    def _open_list(self, mode: str, title: str) -> DataTable[Any]:
        self.list_mode = mode
        self.list_rows = []
        table = self.query_one("#list", DataTable)
        table.clear(columns=True)
        label = self.query_one("#listtitle", Label)
        label.update(title)
        label.display = True
        table.display = True
        self.query_one("#tree").display = False
        return table

    def action_leave(self) -> None:
        prompt = self.query_one("#prompt", Input)
        if prompt.display:
            prompt.display = False
            self._prompt_action = None
            self.query_one("#tree").focus()
            return
        if self.following:
            self._stop_follow()
            if self.selected is not None and not self.selected.is_dir:
                self.show_preview(self.selected.path)
            return
        if self.list_mode:
            self.list_mode = ""
            self.query_one("#list").display = False
            self.query_one("#listtitle").display = False
            tree = self.query_one("#tree", Tree)
            tree.display = True
            tree.focus()

    # -- prompts: filter, grep, copy ------------------------------------------------------
    def _ask(self, placeholder: str, value: str, action: Any) -> None:
        prompt = self.query_one("#prompt", Input)
        prompt.placeholder = placeholder
        prompt.value = value
        prompt.display = True
        prompt.focus()
        self._prompt_action = action

    def on_input_submitted(self, event: Input.Submitted) -> None:
        action, self._prompt_action = self._prompt_action, None
        event.input.display = False
        self.query_one("#tree").focus()
        if action is not None:
            action(event.value)

    def action_filter(self) -> None:
        self._ask("filter names (glob or substring; empty: show all)", self.pattern,
                  self._apply_filter)

    def _apply_filter(self, value: str) -> None:
        self.pattern = value.strip()
        tree = self.query_one("#tree", FsTree)
        for node in self._loaded_nodes(tree):
            listing = self.listings.get(id(node))
            if listing is not None:
                self._show_children(node, listing)
        self.notify(f"filter: {self.pattern}" if self.pattern else "filter cleared", markup=False)

    def _selected_dir(self) -> str:
        row = self.selected
        if row is None:
            return "/"
        return row.path if row.is_dir else (os.path.dirname(row.path) or "/")

    def action_grep(self) -> None:
        where = self._selected_dir()
        self._ask(f"grep below {where} (regular expression)", "",
                  lambda v: self.run_grep(v, where) if v else None)

    @work(thread=True, exclusive=True, group="list")
    def run_grep(self, pattern: str, where: str) -> None:
        worker = get_current_worker()
        hits: list[tuple[str, str]] = []
        try:
            for hit in self.session.grep(pattern, where, lambda: worker.is_cancelled):
                if isinstance(hit, GrepFile):
                    hits.append((hit.path, "binary file matches"))
                else:
                    line = clean(hit.line.decode("utf-8", "replace"))
                    hits.append((hit.path, f"{hit.line_number}: {line}"))
        except CtrfsError as err:
            self.call_from_thread(self._fail, err)
            return
        self.call_from_thread(self._grepped, pattern, where, hits)

    def _grepped(self, pattern: str, where: str, hits: list[tuple[str, str]]) -> None:
        table = self._open_list("grep", f"grep {pattern!r} below {where}: {len(hits)} "
                                "matches (esc: back to the tree)")
        table.add_columns("path", "match")
        for path, line in hits:
            self.list_rows.append(Row(path=path, name=os.path.basename(path), type="f", mode="",
                                      user="", group="", size=0))
            table.add_row(Text(escape(path)), Text(line[:200]))
        table.focus()

    def action_copy(self) -> None:
        row = self.selected
        if row is None or row.deleted:
            self.notify("select a file or directory to copy", severity="warning")
            return
        dest = os.path.join(os.getcwd(), base_name(row.path) or "rootfs")
        self._ask(f"copy {row.path} to (host path)", dest,
                  lambda v: self.copy_out(row.path, v) if v else None)

    @work(thread=True, group="copy")
    def copy_out(self, path: str, dest: str) -> None:
        try:
            res = self.session.copy(path, os.path.expanduser(dest))
        except CtrfsError as err:
            self.call_from_thread(self._fail, err)
            return
        self.call_from_thread(self.notify, f"copied {escape(path)} to {escape(res.dest)}: "
                              f"{res.entries} entries, {human(res.bytes)}", markup=False)

    # -- which, help, quit ----------------------------------------------------------------
    def action_which(self) -> None:
        row = self.selected
        if row is None:
            return
        try:
            res = self.session.which(row.path)
        except CtrfsError as err:
            self._set_preview(f"which {row.path}: {err}")
            return
        lines = [f"which {escape(res.path)}"
                 + (f" (resolved {escape(res.resolved)})" if res.resolved != res.path else "")]
        if res.visible is None:
            lines.append("not visible: deleted")
        for h in res.hits:
            lines.append(f"  layer {h.layer.index} {h.layer.label:<14} {h.type:<8} {h.state:<9}"
                         + (f" {human(h.size)}" if h.size is not None else "")
                         + (f"  {h.reason}" if h.reason else ""))
        self._set_preview("\n".join(lines))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_quit_browse(self) -> None:
        self._stop_follow()
        self.workers.cancel_all()
        self.exit(0)


def run(session: Session, start: str = "/") -> int:
    """Run the UI until the user quits; the exit status."""
    rv = BrowseApp(session, start).run()
    return rv if isinstance(rv, int) else 0
