"""Whether an available-now Kafka step has anything to read, from its checkpoint and the
broker's offsets (both faked here; tests/integration/test_kafka_broker.py asks a real broker),
and the refusal of a checkpoint ahead of the topic."""

from __future__ import annotations

import pytest

from pipeline.bronze import kafka
from pipeline.driver.retry import FATAL_KIND, ClassifiedError
from pipeline.settings import KafkaSettings, SourceSettings

SOURCE = SourceSettings(mode="kafka", kafka=KafkaSettings(bootstrap_servers="broker:9092", topic="events"))


def asked(monkeypatch, committed: dict[int, int], broker: dict[int, tuple[int, int]]) -> bool:
    monkeypatch.setattr(kafka, "_batch_ids", lambda spark, folder: [7])  # batch 7 planned and committed
    monkeypatch.setattr(kafka, "committed_offsets", lambda spark, checkpoint, topic: committed)
    monkeypatch.setattr(kafka, "broker_offsets", lambda spark, k: broker)
    return kafka.caught_up(None, SOURCE, "/lake/_checkpoints/bronze_kafka_events", "/landing")


def test_caught_up_when_every_partition_is_read_to_its_latest_offset(monkeypatch):
    assert asked(monkeypatch, {0: 10, 1: 60}, {0: (0, 10), 1: (5, 60)})
    assert not asked(monkeypatch, {0: 10, 1: 59}, {0: (0, 10), 1: (5, 60)})
    assert not asked(monkeypatch, {0: 10}, {0: (0, 10), 1: (5, 60)})  # a new partition, from its earliest


@pytest.mark.parametrize(
    ("committed", "broker", "says"),
    [
        # the topic recreated: its offsets start again below what the checkpoint read
        (
            {0: 100, 1: 60},
            {0: (0, 10), 1: (0, 60)},
            "partition 0 read to offset 100, the topic's latest is 10",
        ),
        # fewer partitions than the checkpoint read: another topic of the name
        ({0: 10, 1: 60}, {0: (0, 10)}, "partition 1 read to offset 60, no such partition"),
    ],
)
def test_a_checkpoint_ahead_of_the_topic_is_refused_naming_partition_and_offsets(
    monkeypatch, committed, broker, says
):
    """It would otherwise look caught up until the topic's new offsets pass the old ones, then
    skip every record below them."""
    with pytest.raises(ClassifiedError) as refused:
        asked(monkeypatch, committed, broker)
    assert refused.value.kind == FATAL_KIND
    message = str(refused.value)
    assert says in message and "topic events on broker:9092" in message
    assert "/lake/_checkpoints/bronze_kafka_events" in message and "remove the checkpoint folder" in message
