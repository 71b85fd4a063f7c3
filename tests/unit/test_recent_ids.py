"""The bounded set of recently delivered ids that spares most messages a store lookup."""

from __future__ import annotations

from middleware.recent import RecentIds


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


def test_recent_ids_keep_exactly_the_newest_over_many_rotations() -> None:
    recent = RecentIds(100)
    for n in range(1_000):
        recent.add(f"id-{n}")
        recent.add(f"id-{max(0, n - 1)}")  # re-adding a kept id neither moves nor duplicates it
    assert [n for n in range(1_000) if f"id-{n}" in recent] == list(range(900, 1_000))
