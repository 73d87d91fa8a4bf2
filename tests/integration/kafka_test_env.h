#pragma once

// What the integration tests need from the real local Kafka, read directly
// with librdkafka (never through the sidecar): topics, and every record of a
// topic with its key, value and headers.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "kafka/record.h"

namespace eventbus::testing {

// The bootstrap address of the local Kafka (TEST_KAFKA_BROKERS). The test
// binary's environment fails the whole run, saying why, when it is not set or
// Kafka does not answer.
const std::string& KafkaBrokers();

// A topic name unique to this run: "<prefix>-<random>".
std::string UniqueTopic(const std::string& prefix);

// Creates `topic` with `partitions` partitions; fails the test on error.
void CreateTopic(const std::string& topic, int partitions);

struct ConsumedRecord {
  int32_t partition = -1;
  int64_t offset = -1;
  std::optional<std::string> key;
  std::optional<std::string> value;  // nullopt: a null value
  std::vector<kafka::Header> headers;
  int64_t timestamp_ms = 0;

  // The value of the first header called `name`, or nullopt.
  std::optional<std::string> Header(const std::string& name) const;
  kafka::Record AsRecord(const std::string& topic) const;
};

// Reads every record of `topic` from the beginning of each partition up to
// its high watermark at the time of the call, with a plain assign-based
// consumer (no group). Records are in partition, then offset order.
std::vector<ConsumedRecord> ReadTopic(const std::string& topic,
                                      absl::Duration timeout = absl::Seconds(30));

// High watermark of each partition of `topic`.
std::map<int32_t, int64_t> HighWatermarks(const std::string& topic);

// The offset `group` has committed for each partition of `topic`
// (RD_KAFKA_OFFSET_INVALID, -1001, for a partition with none), read with
// rd_kafka_committed() by a consumer that has group.id = `group` but never
// subscribes, so it does not join the group or disturb its members.
std::map<int32_t, int64_t> CommittedOffsets(const std::string& group,
                                            const std::string& topic);

// Commits `offsets` (partition -> offset) of `topic` for `group` with a
// consumer that never joins the group (a "simple" commit, as a tool does).
void CommitOffsets(const std::string& group, const std::string& topic,
                   const std::map<int32_t, int64_t>& offsets);

// Produces one plain record (no CloudEvents headers unless given) with a
// plain librdkafka producer (acks=all) and flushes; fails the test unless
// Kafka acknowledged it.
void ProduceRaw(const std::string& topic, std::optional<std::string> key,
                std::string value, std::vector<kafka::Header> headers);

// Produces every record (each to its own `topic`) with one plain librdkafka
// producer (acks=all, idempotent, so per partition the order is kept), then
// flushes. Returns where each record was written, in the order given; fails
// the test unless Kafka acknowledged every record.
//
// With a transaction other than kNone the records are written in one Kafka
// transaction, committed or aborted after the flush: each partition then
// ends with a transaction marker (a record no consumer sees), and aborted
// records are skipped by read_committed consumers.
enum class Transaction { kNone, kCommit, kAbort };
std::vector<kafka::DeliveryResult> ProduceRecords(
    const std::vector<kafka::Record>& records,
    Transaction transaction = Transaction::kNone);

}  // namespace eventbus::testing
