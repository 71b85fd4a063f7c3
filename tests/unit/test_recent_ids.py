"""The bounded set of recently delivered ids that spares most messages a store lookup."""

from __future__ import annotations

from middleware.pipeline import RecentIds


def test_recent_ids_remember_until_full_then_forget_oldest_first() -> None:
    recent = RecentIds(3)
    for item in ("a", "b", "c"):
        recent.add(item)
    assert all(item in recent for item in ("a", "b", "c"))
    recent.add("d")
    assert "a" not in recent
    assert all(item in recent for item in ("b", "c", "d"))


def test_recent_ids_adding_a_known_id_keeps_the_size() -> None:
    recent = RecentIds(2)
    recent.add("a")
    recent.add("a")
    recent.add("b")
    assert "a" in recent and "b" in recent
