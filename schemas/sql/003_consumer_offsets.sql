-- 003_consumer_offsets: where each consumer group stands in each Kafka partition, written by
-- auren-persister in the same transaction as the rows it read, so that rows and offsets commit
-- (or roll back) together. On partition assignment the persister seeks to next_offset; Kafka's
-- own committed offsets are only a fallback (and what lag tools read).
-- Applied by `auren-admin migrate` in its own transaction (no BEGIN/COMMIT here).

CREATE TABLE consumer_offsets (
    consumer_group text    NOT NULL,
    topic          text    NOT NULL,
    kafka_partition integer NOT NULL CHECK (kafka_partition >= 0),
    next_offset    bigint  NOT NULL CHECK (next_offset >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, kafka_partition)
);
