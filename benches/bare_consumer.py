"""The bare consumer `bench.py` measures crmdq's Kafka line against: a librdkafka consumer
(confluent_kafka) in a group of its own that only drains `count` messages from the topic
and exits, timed like `crmdq run` from process start to exit.

    python3 bare_consumer.py HOST:PORT TOPIC COUNT GROUP
"""
import sys
import time

from confluent_kafka import Consumer


def main():
    addr, topic, count, group = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    c = Consumer({"bootstrap.servers": addr, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    got, t = 0, time.time()
    while got < count and time.time() - t < 900:
        for m in c.consume(10000, 0.5):
            if not m.error():
                got += 1
    c.close()
    print(got)
    if got < count:
        sys.exit(f"consumed {got} of {count}")


if __name__ == "__main__":
    main()
