"""The one layered layout of a directed graph the report draws: the step DAG and the lineage
graph both go through `layout` (columns by longest path, rows by barycentre) and the `graph`
macro of templates/macros.j2 (the SVG frame, arrow marker, column titles and edges).

Pure and deterministic: the same nodes and predecessors give the same positions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class GraphStyle:
    """Node size, gaps and margins of one kind of graph (pixels)."""

    node_w: int
    node_h: int
    gap_x: int
    gap_y: int
    top: int  # room above the first row for the column titles
    left: int
    pad: int  # right and bottom margin
    title_y: int
    title_size: float


@dataclass(frozen=True)
class Column:
    x: int
    nodes: list[str]  # top to bottom


@dataclass(frozen=True)
class Layout:
    style: GraphStyle
    width: int
    height: int
    columns: list[Column]  # left to right
    pos: dict[str, tuple[int, int]]  # node -> top-left corner
    edges: list[str]  # SVG path data, one cubic curve per edge predecessor -> node


def rank(nodes: Sequence[str], preds: dict[str, list[str]]) -> dict[str, int]:
    """Longest-path layering (column index) of an acyclic graph; cycles are broken arbitrarily."""
    ranks: dict[str, int] = {}
    visiting: set[str] = set()

    def visit(node: str) -> int:
        if node in ranks:
            return ranks[node]
        if node in visiting:
            return 0
        visiting.add(node)
        ranks[node] = 1 + max((visit(p) for p in preds.get(node, []) if p in preds or p in nodes), default=-1)
        visiting.discard(node)
        return ranks[node]

    for node in nodes:
        visit(node)
    return ranks


def order_columns(columns: dict[int, list[str]], preds: dict[str, list[str]]) -> None:
    """Order each column by the mean position of the node's predecessors (barycentre), ties by
    the existing order: fewer crossing edges, still deterministic."""
    position: dict[str, float] = {}
    for col in sorted(columns):
        nodes = columns[col]

        def key(item: tuple[int, str]) -> tuple[float, int]:
            index, node = item
            placed = [position[p] for p in preds.get(node, []) if p in position]
            return (sum(placed) / len(placed) if placed else float(index), index)

        columns[col] = [n for _, n in sorted(enumerate(nodes), key=key)]
        for i, node in enumerate(columns[col]):
            position[node] = float(i)


def layout(nodes: Sequence[str], preds: dict[str, list[str]], style: GraphStyle) -> Layout:
    """Positions of `nodes` (in their given order within a column, before barycentre ordering)
    and the edges from each node's predecessors, in node order then predecessor order."""
    ranks = rank(nodes, preds)
    by_rank: dict[int, list[str]] = {}
    for node in nodes:
        by_rank.setdefault(ranks[node], []).append(node)
    order_columns(by_rank, preds)
    s = style
    columns = [Column(s.left + col * (s.node_w + s.gap_x), by_rank[col]) for col in sorted(by_rank)]
    pos = {
        node: (column.x, s.top + i * (s.node_h + s.gap_y))
        for column in columns
        for i, node in enumerate(column.nodes)
    }
    edges = []
    for node in nodes:
        for pred in preds.get(node, []):
            if pred in pos:
                (x1, y1), (x2, y2) = pos[pred], pos[node]
                edges.append(_curve(x1 + s.node_w, y1 + s.node_h / 2, x2 - 2, y2 + s.node_h / 2))
    height = s.top + max(len(c.nodes) for c in columns) * (s.node_h + s.gap_y) + s.pad
    width = s.left + len(columns) * (s.node_w + s.gap_x) - s.gap_x + s.pad
    return Layout(style, width, height, columns, pos, edges)


def _curve(x1: float, y1: float, x2: float, y2: float) -> str:
    mid = (x1 + x2) / 2
    return f"M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
