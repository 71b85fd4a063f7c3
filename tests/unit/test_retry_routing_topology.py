"""Pure decisions: retry tiers, topic pattern matching, derived queue names and arguments."""

from __future__ import annotations

import pytest

from middleware.broker.topology import (
    EVENTS_EXCHANGE,
    UNROUTED,
    dlq_name,
    queue_name,
    retry_name,
    topology_for,
)
from middleware.config.models import Config, RetryPolicy
from middleware.errors import TopologyConflict
from middleware.retry import DeadLetter, Retry, decide
from middleware.routing import compile_patterns

POLICY = RetryPolicy(attempts=4, initial_delay=1, multiplier=4, max_delay=30)


def test_retry_policy_delays_grow_exponentially_and_are_capped() -> None:
    assert POLICY.delays() == [1, 4, 16, 30]


@pytest.mark.parametrize(
    ("done", "retryable", "after", "expected"),
    [
        (0, True, None, Retry(1, 1)),
        (2, True, None, Retry(3, 16)),
        (4, True, None, DeadLetter("retries_exhausted")),
        (0, False, None, DeadLetter("permanent")),
        (0, True, 10, Retry(3, 16)),  # Retry-After 10s skips the 1s and 4s tiers
        (3, True, 100, Retry(4, 30)),  # never beyond the last tier
    ],
)
def test_retry_decide(done: int, retryable: bool, after: float | None, expected: object) -> None:
    assert decide(POLICY, done, retryable, after) == expected


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("crm.customer.*", "crm.customer.updated", True),
        ("crm.customer.*", "crm.customer", False),
        ("crm.customer.*", "crm.customer.a.b", False),
        ("crm.#", "crm", True),
        ("crm.#", "crm.order.line.added", True),
        ("crm.#", "crmx.order", False),
        ("#.deleted", "erp.account.deleted", True),
        ("a.#.c", "a.c", True),
        ("a.#.c", "a.x.y.c", True),
        ("a.*.c", "a.x.y.c", False),
        ("#", "anything.at.all", True),
    ],
)
def test_routing_patterns_follow_amqp_topic_semantics(
    pattern: str, key: str, matches: bool
) -> None:
    assert compile_patterns([pattern])(key) is matches


def test_topology_derives_route_queues_with_explicit_arguments() -> None:
    config = Config.model_validate({
        "retry": {"attempts": 2, "initial_delay": 1.5, "multiplier": 2, "delivery_limit": 7},
        "routes": [{"name": "orders", "bind": ["crm.order.*"],
                    "target": {"type": "amqp", "exchange": "x", "routing_key": "k"}}],
    })
    topology = topology_for(config)
    names = [q.name for q in topology.queues]
    assert names == [UNROUTED, queue_name("orders"), retry_name("orders", 1),
                     retry_name("orders", 2), dlq_name("orders")]
    main, tier1, tier2, dlq = topology.queues[1:]
    assert main.arguments == {
        "x-queue-type": "quorum", "x-delivery-limit": 7, "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "silobridge.route.orders.dlq",
        "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish",
    }
    assert main.bindings == ((EVENTS_EXCHANGE, "crm.order.*"),)
    assert tier1.arguments["x-message-ttl"] == 1500 and tier2.arguments["x-message-ttl"] == 3000
    assert tier1.arguments["x-dead-letter-routing-key"] == "silobridge.route.orders"
    assert dlq.arguments == {"x-queue-type": "classic"}
    events = next(e for e in topology.exchanges if e.name == EVENTS_EXCHANGE)
    assert events.arguments == {"alternate-exchange": UNROUTED}


def test_topology_dlq_is_read_without_counting_under_rabbitmq_4_semantics() -> None:
    # RabbitMQ 4.x: quorum queues count every return as a delivery and drop a message past a
    # default delivery limit of 20 (unless x-delivery-limit says otherwise); classic queues
    # count nothing, and a vhost may default new queues to quorum. So the DLQ must name its
    # type, and that type must be classic, with no delivery limit to reach.
    config = Config.model_validate({"routes": [
        {"name": "orders", "bind": ["crm.order.*"],
         "target": {"type": "amqp", "exchange": "x", "routing_key": "k"}}]})
    dlq = next(q for q in topology_for(config).queues if q.name == dlq_name("orders"))
    assert dlq.arguments.get("x-queue-type") == "classic"
    assert "x-delivery-limit" not in dlq.arguments
    # while the route queue keeps its explicit limit, which 4.x honours over its default
    main = next(q for q in topology_for(config).queues if q.name == queue_name("orders"))
    assert main.arguments["x-queue-type"] == "quorum"
    assert isinstance(main.arguments["x-delivery-limit"], int)


def test_topology_conflict_on_a_dlq_names_the_migration() -> None:
    message = str(TopologyConflict(dlq_name("orders"), "inequivalent arg 'x-queue-type'"))
    assert "run 'silobridge dlq migrate orders'" in message
    assert "delete it" in str(TopologyConflict(queue_name("orders"), "x"))
