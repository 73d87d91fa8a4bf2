#pragma once

// Kafka topic and consumer-group administration on librdkafka's admin API:
// what `kafka-topics.sh` and `kafka-consumer-groups.sh` do, as calls.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kafka/rdkafka_handles.h"

namespace eventbus::kafka {

struct NewTopic {
  std::string name;
  int32_t partitions = -1;          // -1: the broker's num.partitions
  int32_t replication_factor = -1;  // -1: default.replication.factor
  std::map<std::string, std::string> configs;
};

struct TopicSummary {
  std::string name;
  int32_t partitions = 0;
  int32_t replication_factor = 0;  // replicas of partition 0
  bool internal = false;
};

struct PartitionDescription {
  int32_t partition = 0;
  int32_t leader = -1;  // -1: none
  std::vector<int32_t> replicas;
  std::vector<int32_t> isr;
  int64_t low_watermark = -1;  // -1: unknown (the partition did not answer)
  int64_t high_watermark = -1;
};

struct TopicConfigEntry {
  std::string name;
  std::string value;  // empty when sensitive
  std::string source;
  bool is_default = false;
  bool sensitive = false;
  bool read_only = false;
};

struct TopicDescription {
  std::string name;
  std::string topic_id;
  bool internal = false;
  std::vector<PartitionDescription> partitions;  // by partition
  std::vector<TopicConfigEntry> configs;         // by name
};

struct GroupSummary {
  std::string group_id;
  std::string state;
  bool simple = false;
};

struct GroupPartition {
  std::string topic;
  int32_t partition = 0;
  friend auto operator<=>(const GroupPartition&, const GroupPartition&) = default;
};

struct GroupMemberDescription {
  std::string member_id;
  std::string client_id;
  std::string host;
  std::vector<GroupPartition> assignment;
};

struct GroupPartitionOffset {
  std::string topic;
  int32_t partition = 0;
  int64_t committed_offset = -1;  // -1: none
  int64_t high_watermark = -1;    // -1: unknown
  int64_t lag = -1;               // -1: unknown (nothing committed)
  std::string member_id;          // empty: not assigned
};

struct GroupDescription {
  std::string group_id;
  std::string state;
  std::string partition_assignor;
  int32_t coordinator = -1;
  std::vector<GroupMemberDescription> members;
  std::vector<GroupPartitionOffset> offsets;  // by topic, partition
  int64_t total_lag = 0;
};

struct OffsetReset {
  enum class To { kEarliest, kLatest, kTime, kOffset };
  std::string group_id;
  std::string topic;
  std::vector<int32_t> partitions;  // empty: all
  To to = To::kEarliest;
  absl::Time time;     // kTime
  int64_t offset = 0;  // kOffset
  bool dry_run = false;
};

struct PartitionOffsetChange {
  std::string topic;
  int32_t partition = 0;
  int64_t previous_offset = -1;  // -1: none committed
  int64_t new_offset = -1;
};

// One admin client (a librdkafka handle of its own, created at the first
// call so that a sidecar nobody administers keeps no extra connections).
// Thread-safe; each call blocks its caller until Kafka answers or `timeout`
// passes (DeadlineExceeded), or Cancel() is called (Unavailable).
//
// Errors carry Kafka's message and error name: NotFound (topic, group),
// AlreadyExists, InvalidArgument (partitions, replication factor, configs),
// PermissionDenied (ACLs), FailedPrecondition (a group with members),
// Unavailable (no broker), DeadlineExceeded.
class Admin {
 public:
  // `properties`: librdkafka properties of the handle (bootstrap.servers,
  // security settings, ...). Checked at the first call.
  explicit Admin(std::map<std::string, std::string> properties);
  ~Admin();
  Admin(const Admin&) = delete;
  Admin& operator=(const Admin&) = delete;

  absl::Status CreateTopic(const NewTopic& topic, absl::Duration timeout);
  absl::StatusOr<std::vector<TopicSummary>> ListTopics(bool include_internal,
                                                       absl::Duration timeout);
  absl::StatusOr<TopicDescription> DescribeTopic(const std::string& topic,
                                                 absl::Duration timeout);
  absl::Status DeleteTopic(const std::string& topic, absl::Duration timeout);
  absl::StatusOr<std::vector<GroupSummary>> ListGroups(absl::Duration timeout);
  // Committed offset and lag for every partition the group has an offset
  // for or a member holds. NotFound for a group with neither members nor
  // offsets.
  absl::StatusOr<GroupDescription> DescribeGroup(const std::string& group,
                                                 absl::Duration timeout);
  // Computes the new offsets and, unless dry_run, commits them.
  // FailedPrecondition while the group has members.
  absl::StatusOr<std::vector<PartitionOffsetChange>> ResetGroupOffsets(
      const OffsetReset& reset, absl::Duration timeout);

  // Ends calls in progress and later ones with Unavailable (shutdown).
  void Cancel();

 private:
  struct Call;
  absl::StatusOr<rd_kafka_t*> Handle();
  // The steps the calls above are made of; `what` names the subject in
  // errors.
  absl::StatusOr<TopicDescription> DescribeTopicPartitions(
      rd_kafka_t* rk, const std::string& topic, absl::Duration timeout);
  // The offsets ListOffsets gives for `partitions` at `spec` (an
  // rd_kafka_OffsetSpec_t, or a timestamp in ms for the first record at or
  // after it); -1 where a partition did not answer or, for a timestamp, has
  // no such record.
  absl::StatusOr<std::map<GroupPartition, int64_t>> ListOffsets(
      rd_kafka_t* rk, const std::vector<GroupPartition>& partitions,
      int64_t spec, absl::Duration timeout, absl::string_view what);
  // State, assignor, coordinator and members; no offsets.
  absl::StatusOr<GroupDescription> DescribeGroupMembers(
      rd_kafka_t* rk, const std::string& group, absl::Duration timeout);
  // The group's committed offsets (-1: none) for `partitions`, or for every
  // partition it has one for when null.
  absl::StatusOr<std::map<GroupPartition, int64_t>> CommittedOffsets(
      rd_kafka_t* rk, const std::string& group,
      const std::vector<GroupPartition>* partitions, absl::Duration timeout);
  // One attempt of each of the two above; they retry these while the
  // group's coordinator is loading or moving.
  absl::StatusOr<GroupDescription> DescribeGroupMembersOnce(
      rd_kafka_t* rk, const std::string& group, absl::Duration timeout);
  absl::StatusOr<std::map<GroupPartition, int64_t>> CommittedOffsetsOnce(
      rd_kafka_t* rk, const std::string& group,
      const std::vector<GroupPartition>* partitions, absl::Duration timeout);

  const std::map<std::string, std::string> properties_;
  std::atomic<bool> cancelled_{false};
  absl::Mutex mu_;
  RdKafkaPtr rk_ ABSL_GUARDED_BY(mu_);
};

}  // namespace eventbus::kafka
