#include "kafka/admin.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kafka/rdkafka_producer.h"

namespace eventbus::kafka {
namespace {

// Admin requests wait for their result in slices this long, so that
// Cancel() ends them promptly.
constexpr absl::Duration kPollSlice = absl::Milliseconds(100);

struct AdminOptionsDeleter {
  void operator()(rd_kafka_AdminOptions_t* o) const noexcept {
    rd_kafka_AdminOptions_destroy(o);
  }
};
using AdminOptionsPtr =
    std::unique_ptr<rd_kafka_AdminOptions_t, AdminOptionsDeleter>;

// The status for a Kafka error about `what` (e.g. "topic orders"), with
// Kafka's own words and the error's name.
absl::Status AdminError(rd_kafka_resp_err_t err, absl::string_view what,
                        absl::string_view detail) {
  std::string message = absl::StrCat(
      what, ": ", detail.empty() ? rd_kafka_err2str(err) : detail, " (",
      rd_kafka_err2name(err), ")");
  switch (err) {
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_ID:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND:
      return absl::NotFoundError(message);
    case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
      return absl::AlreadyExistsError(message);
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICA_ASSIGNMENT:
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR_INVALID_REQUEST:
    case RD_KAFKA_RESP_ERR_INVALID_GROUP_ID:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
      return absl::InvalidArgumentError(message);
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
      return absl::PermissionDeniedError(message);
    case RD_KAFKA_RESP_ERR_NON_EMPTY_GROUP:
    case RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID:
    case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION:
    case RD_KAFKA_RESP_ERR_TOPIC_DELETION_DISABLED:
      return absl::FailedPreconditionError(message);
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
      return absl::DeadlineExceededError(message);
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status ErrorStatus(const rd_kafka_error_t* error, absl::string_view what) {
  return AdminError(rd_kafka_error_code(error), what,
                    rd_kafka_error_string(error));
}

// The first error among CreateTopics/DeleteTopics results, or OK.
absl::Status TopicResultsStatus(const rd_kafka_topic_result_t** results,
                                size_t n, absl::string_view what) {
  for (size_t i = 0; i < n; ++i) {
    if (rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
        err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* detail = rd_kafka_topic_result_error_string(results[i]);
      return AdminError(err, what, detail != nullptr ? detail : "");
    }
  }
  return absl::OkStatus();
}

// The first error of a group result: the group's own, else a partition's.
absl::Status GroupResultStatus(const rd_kafka_group_result_t* group,
                               absl::string_view what) {
  if (const rd_kafka_error_t* error = rd_kafka_group_result_error(group);
      error != nullptr &&
      rd_kafka_error_code(error) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrorStatus(error, what);
  }
  const rd_kafka_topic_partition_list_t* partitions =
      rd_kafka_group_result_partitions(group);
  for (int j = 0; partitions != nullptr && j < partitions->cnt; ++j) {
    const rd_kafka_topic_partition_t& tp = partitions->elems[j];
    if (tp.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return AdminError(tp.err,
                        absl::StrCat(what, ", ", tp.topic, "/", tp.partition), "");
    }
  }
  return absl::OkStatus();
}

// A group's coordinator answers "loading" (right after a broker starts, or
// when the coordinator moves) or "not coordinator" for a moment: such
// answers are asked again until the deadline, as Kafka's own tools do.
constexpr absl::Duration kCoordinatorRetry = absl::Milliseconds(100);

bool IsCoordinatorMoving(const absl::Status& s) {
  return absl::IsUnavailable(s) &&
         (absl::StrContains(s.message(), "(COORDINATOR_LOAD_IN_PROGRESS)") ||
          absl::StrContains(s.message(), "(COORDINATOR_NOT_AVAILABLE)") ||
          absl::StrContains(s.message(), "(NOT_COORDINATOR)"));
}

template <typename Attempt>
auto RetryWhileCoordinatorMoves(absl::Duration timeout, Attempt attempt) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    auto result = attempt(std::max(deadline - absl::Now(), absl::Milliseconds(1)));
    if (result.ok() || !IsCoordinatorMoving(result.status()) ||
        absl::Now() + kCoordinatorRetry >= deadline) {
      return result;
    }
    absl::SleepFor(kCoordinatorRetry);
  }
}

int TimeoutMs(absl::Duration timeout) {
  return static_cast<int>(std::clamp<int64_t>(
      absl::ToInt64Milliseconds(timeout), 1, 24 * 3600 * 1000));
}

std::string ConsumerGroupState(rd_kafka_consumer_group_state_t state) {
  return rd_kafka_consumer_group_state_name(state);
}

RdKafkaTopicPartitionListPtr PartitionList(
    const std::vector<GroupPartition>& partitions, int64_t offset) {
  RdKafkaTopicPartitionListPtr list(rd_kafka_topic_partition_list_new(
      static_cast<int>(std::max<size_t>(1, partitions.size()))));
  for (const GroupPartition& p : partitions) {
    rd_kafka_topic_partition_list_add(list.get(), p.topic.c_str(), p.partition)
        ->offset = offset;
  }
  return list;
}

}  // namespace

// One admin request: its options, its reply queue and the wait for the
// result event.
struct Admin::Call {
  Admin* admin;
  rd_kafka_t* rk;
  AdminOptionsPtr options;
  RdKafkaQueuePtr queue;
  absl::Time deadline;

  Call(Admin* a, rd_kafka_t* handle, rd_kafka_admin_op_t op,
       absl::Duration timeout)
      : admin(a),
        rk(handle),
        options(rd_kafka_AdminOptions_new(handle, op)),
        queue(rd_kafka_queue_new(handle)),
        deadline(absl::Now() + timeout) {
    char errstr[256];
    rd_kafka_AdminOptions_set_request_timeout(options.get(), TimeoutMs(timeout),
                                              errstr, sizeof(errstr));
    if (op == RD_KAFKA_ADMIN_OP_CREATETOPICS ||
        op == RD_KAFKA_ADMIN_OP_DELETETOPICS) {
      // Kafka waits this long for the change to reach every broker.
      rd_kafka_AdminOptions_set_operation_timeout(
          options.get(), TimeoutMs(timeout), errstr, sizeof(errstr));
    }
  }

  // Waits for the request's result event; `what` names it in errors.
  absl::StatusOr<RdKafkaEventPtr> Wait(absl::string_view what) {
    while (true) {
      if (admin->cancelled_.load()) {
        return absl::UnavailableError(
            absl::StrCat(what, ": the sidecar is shutting down"));
      }
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        return absl::DeadlineExceededError(absl::StrCat(
            what, ": Kafka did not answer within the deadline"));
      }
      RdKafkaEventPtr event(rd_kafka_queue_poll(
          queue.get(), TimeoutMs(std::min(left, kPollSlice))));
      if (event == nullptr) continue;
      if (rd_kafka_event_error(event.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return AdminError(rd_kafka_event_error(event.get()), what,
                          rd_kafka_event_error_string(event.get()));
      }
      return event;
    }
  }
};

Admin::Admin(std::map<std::string, std::string> properties)
    : properties_(std::move(properties)) {}

Admin::~Admin() = default;

void Admin::Cancel() { cancelled_.store(true); }

absl::StatusOr<rd_kafka_t*> Admin::Handle() {
  if (cancelled_.load()) {
    return absl::UnavailableError("the sidecar is shutting down");
  }
  absl::MutexLock lock(&mu_);
  if (rk_ != nullptr) return rk_.get();
  absl::StatusOr<RdKafkaConfPtr> conf = MakeRdKafkaConf(properties_);
  if (!conf.ok()) return conf.status();
  char errstr[512];
  rd_kafka_t* rk =
      rd_kafka_new(RD_KAFKA_PRODUCER, conf->get(), errstr, sizeof(errstr));
  if (rk == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create the Kafka admin client: ", errstr));
  }
  conf->release();  // rd_kafka_new owns it now
  rk_.reset(rk);
  return rk;
}

absl::Status Admin::CreateTopic(const NewTopic& topic, absl::Duration timeout) {
  absl::StatusOr<rd_kafka_t*> rk = Handle();
  if (!rk.ok()) return rk.status();
  const std::string what = absl::StrCat("topic ", topic.name);
  char errstr[512];
  rd_kafka_NewTopic_t* nt =
      rd_kafka_NewTopic_new(topic.name.c_str(), topic.partitions,
                            topic.replication_factor, errstr, sizeof(errstr));
  if (nt == nullptr) return absl::InvalidArgumentError(
      absl::StrCat(what, ": ", errstr));
  absl::Cleanup destroy = [nt] { rd_kafka_NewTopic_destroy(nt); };
  for (const auto& [name, value] : topic.configs) {
    if (rd_kafka_resp_err_t err =
            rd_kafka_NewTopic_set_config(nt, name.c_str(), value.c_str());
        err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return AdminError(err, absl::StrCat(what, ", config ", name), "");
    }
  }
  Call call(this, *rk, RD_KAFKA_ADMIN_OP_CREATETOPICS, timeout);
  rd_kafka_NewTopic_t* topics[] = {nt};
  rd_kafka_CreateTopics(*rk, topics, 1, call.options.get(), call.queue.get());
  absl::StatusOr<RdKafkaEventPtr> event = call.Wait(what);
  if (!event.ok()) return event.status();
  size_t n = 0;
  const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(
      rd_kafka_event_CreateTopics_result(event->get()), &n);
  return TopicResultsStatus(results, n, what);
}

absl::Status Admin::DeleteTopic(const std::string& topic,
                                absl::Duration timeout) {
  absl::StatusOr<rd_kafka_t*> rk = Handle();
  if (!rk.ok()) return rk.status();
  const absl::Time deadline = absl::Now() + timeout;
  const std::string what = absl::StrCat("topic ", topic);
  rd_kafka_DeleteTopic_t* dt = rd_kafka_DeleteTopic_new(topic.c_str());
  absl::Cleanup destroy = [dt] { rd_kafka_DeleteTopic_destroy(dt); };
  Call call(this, *rk, RD_KAFKA_ADMIN_OP_DELETETOPICS, timeout);
  rd_kafka_DeleteTopic_t* topics[] = {dt};
  rd_kafka_DeleteTopics(*rk, topics, 1, call.options.get(), call.queue.get());
  absl::StatusOr<RdKafkaEventPtr> event = call.Wait(what);
  if (!event.ok()) return event.status();
  size_t n = 0;
  const rd_kafka_topic_result_t** results = rd_kafka_DeleteTopics_result_topics(
      rd_kafka_event_DeleteTopics_result(event->get()), &n);
  absl::Status deleted = TopicResultsStatus(results, n, what);
  if (!deleted.ok()) return deleted;
  // The controller has deleted it; the brokers learn of it a little later.
  // Answer once a broker says it is gone, so that the caller's next call
  // sees it gone (seen: a describe right after the delete still found it).
  // Until the deadline at most: the deletion stands either way.
  while (absl::Now() < deadline) {
    absl::StatusOr<TopicDescription> described = DescribeTopicPartitions(
        *rk, topic, std::max(deadline - absl::Now(), absl::Milliseconds(1)));
    // Gone (NotFound), or no answer (cancelled, no broker): done either way.
    if (!described.ok()) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TopicSummary>> Admin::ListTopics(
    bool include_internal, absl::Duration timeout) {
  absl::StatusOr<rd_kafka_t*> rk = Handle();
  if (!rk.ok()) return rk.status();
  const absl::Time deadline = absl::Now() + timeout;
  // Every topic's name from the cluster's metadata, then DescribeTopics for
  // whether each is internal (metadata does not say) and its replicas.
  // rd_kafka_metadata() cannot be cancelled: ask in slices, so that
  // Cancel() ends the wait promptly.
  const rd_kafka_metadata_t* raw = nullptr;
  while (true) {
    if (cancelled_.load()) {
      return absl::UnavailableError("listing topics: the sidecar is shutting down");
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(
          "listing topics: Kafka did not answer within the deadline");
    }
    const rd_kafka_resp_err_t err = rd_kafka_metadata(
        *rk, 1, nullptr, &raw, TimeoutMs(std::min(left, 5 * kPollSlice)));
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
    if (err != RD_KAFKA_RESP_ERR__TIMED_OUT && err != RD_KAFKA_RESP_ERR__TRANSPORT) {
      return AdminError(err, "listing topics", "");
    }
  }
  RdKafkaMetadataPtr metadata(raw);
  std::vector<const char*> names;
  for (int i = 0; i < metadata->topic_cnt; ++i) {
    names.push_back(metadata->topics[i].topic);
  }
  std::vector<TopicSummary> out;
  if (names.empty()) return out;
  rd_kafka_TopicCollection_t* collection =
      rd_kafka_TopicCollection_of_topic_names(names.data(), names.size());
  absl::Cleanup destroy = [collection] {
    rd_kafka_TopicCollection_destroy(collection);
  };
  Call call(this, *rk, RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
            std::max(deadline - absl::Now(), absl::Milliseconds(1)));
  rd_kafka_DescribeTopics(*rk, collection, call.options.get(),
                          call.queue.get());
  absl::StatusOr<RdKafkaEventPtr> event = call.Wait("listing topics");
  if (!event.ok()) return event.status();
  size_t n = 0;
  const rd_kafka_TopicDescription_t** topics =
      rd_kafka_DescribeTopics_result_topics(
          rd_kafka_event_DescribeTopics_result(event->get()), &n);
  for (size_t i = 0; i < n; ++i) {
    // A topic deleted since the metadata was read has an error: skip it.
    if (rd_kafka_error_code(rd_kafka_TopicDescription_error(topics[i])) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
      continue;
    }
    TopicSummary summary;
    summary.name = rd_kafka_TopicDescription_name(topics[i]);
    summary.internal = rd_kafka_TopicDescription_is_internal(topics[i]) != 0;
    if (summary.internal && !include_internal) continue;
    size_t partitions = 0;
    const rd_kafka_TopicPartitionInfo_t** infos =
        rd_kafka_TopicDescription_partitions(topics[i], &partitions);
    summary.partitions = static_cast<int32_t>(partitions);
    for (size_t p = 0; p < partitions; ++p) {
      if (rd_kafka_TopicPartitionInfo_partition(infos[p]) != 0) continue;
      size_t replicas = 0;
      rd_kafka_TopicPartitionInfo_replicas(infos[p], &replicas);
      summary.replication_factor = static_cast<int32_t>(replicas);
    }
    out.push_back(std::move(summary));
  }
  std::sort(out.begin(), out.end(),
            [](const TopicSummary& a, const TopicSummary& b) {
              return a.name < b.name;
            });
  return out;
}

absl::StatusOr<TopicDescription> Admin::DescribeTopic(const std::string& topic,
                                                      absl::Duration timeout) {
  absl::StatusOr<rd_kafka_t*> rk = Handle();
  if (!rk.ok()) return rk.status();
  const absl::Time deadline = absl::Now() + timeout;
  const std::string what = absl::StrCat("topic ", topic);
  auto left = [deadline] {
    return std::max(deadline - absl::Now(), absl::Milliseconds(1));
  };
  absl::StatusOr<TopicDescription> described =
      DescribeTopicPartitions(*rk, topic, left());
  if (!described.ok()) return described.status();
  TopicDescription out = *std::move(described);
  std::vector<GroupPartition> all;
  for (const PartitionDescription& d : out.partitions) {
    all.push_back({out.name, d.partition});
  }
  for (int64_t spec : {int64_t{RD_KAFKA_OFFSET_SPEC_EARLIEST},
                       int64_t{RD_KAFKA_OFFSET_SPEC_LATEST}}) {
    absl::StatusOr<std::map<GroupPartition, int64_t>> offsets =
        ListOffsets(*rk, all, spec, left(), what);
    if (!offsets.ok()) return offsets.status();
    for (PartitionDescription& d : out.partitions) {
      auto it = offsets->find({out.name, d.partition});
      if (it == offsets->end()) continue;
      (spec == RD_KAFKA_OFFSET_SPEC_EARLIEST ? d.low_watermark
                                             : d.high_watermark) = it->second;
    }
  }
  {
    rd_kafka_ConfigResource_t* resource =
        rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str());
    absl::Cleanup destroy = [resource] {
      rd_kafka_ConfigResource_destroy(resource);
    };
    Call call(this, *rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, left());
    rd_kafka_ConfigResource_t* resources[] = {resource};
    rd_kafka_DescribeConfigs(*rk, resources, 1, call.options.get(),
                             call.queue.get());
    absl::StatusOr<RdKafkaEventPtr> event = call.Wait(what);
    if (!event.ok()) return event.status();
    size_t n = 0;
    const rd_kafka_ConfigResource_t** described =
        rd_kafka_DescribeConfigs_result_resources(
            rd_kafka_event_DescribeConfigs_result(event->get()), &n);
    for (size_t r = 0; r < n; ++r) {
      if (rd_kafka_resp_err_t err = rd_kafka_ConfigResource_error(described[r]);
          err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* detail = rd_kafka_ConfigResource_error_string(described[r]);
        return AdminError(err, what, detail != nullptr ? detail : "");
      }
      size_t count = 0;
      const rd_kafka_ConfigEntry_t** entries =
          rd_kafka_ConfigResource_configs(described[r], &count);
      for (size_t i = 0; i < count; ++i) {
        TopicConfigEntry e;
        e.name = rd_kafka_ConfigEntry_name(entries[i]);
        e.sensitive = rd_kafka_ConfigEntry_is_sensitive(entries[i]) != 0;
        const char* value = rd_kafka_ConfigEntry_value(entries[i]);
        if (value != nullptr && !e.sensitive) e.value = value;
        e.source = rd_kafka_ConfigSource_name(
            rd_kafka_ConfigEntry_source(entries[i]));
        e.is_default = rd_kafka_ConfigEntry_is_default(entries[i]) != 0;
        e.read_only = rd_kafka_ConfigEntry_is_read_only(entries[i]) != 0;
        out.configs.push_back(std::move(e));
      }
    }
    std::sort(out.configs.begin(), out.configs.end(),
              [](const TopicConfigEntry& a, const TopicConfigEntry& b) {
                return a.name < b.name;
              });
  }
  return out;
}

absl::StatusOr<std::map<GroupPartition, int64_t>> Admin::ListOffsets(
    rd_kafka_t* rk, const std::vector<GroupPartition>& partitions, int64_t spec,
    absl::Duration timeout, absl::string_view what) {
  std::map<GroupPartition, int64_t> out;
  if (partitions.empty()) return out;
  RdKafkaTopicPartitionListPtr list = PartitionList(partitions, spec);
  Call call(this, rk, RD_KAFKA_ADMIN_OP_LISTOFFSETS, timeout);
  rd_kafka_ListOffsets(rk, list.get(), call.options.get(), call.queue.get());
  absl::StatusOr<RdKafkaEventPtr> event = call.Wait(what);
  if (!event.ok()) return event.status();
  size_t n = 0;
  const rd_kafka_ListOffsetsResultInfo_t** infos =
      rd_kafka_ListOffsets_result_infos(
          rd_kafka_event_ListOffsets_result(event->get()), &n);
  for (size_t i = 0; i < n; ++i) {
    const rd_kafka_topic_partition_t* tp =
        rd_kafka_ListOffsetsResultInfo_topic_partition(infos[i]);
    out[{tp->topic, tp->partition}] =
        tp->err == RD_KAFKA_RESP_ERR_NO_ERROR ? tp->offset : -1;
  }
  return out;
}

absl::StatusOr<std::vector<GroupSummary>> Admin::ListGroups(
    absl::Duration timeout) {
  absl::StatusOr<rd_kafka_t*> rk = Handle();
  if (!rk.ok()) return rk.status();
  Call call(this, *rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS, timeout);
  rd_kafka_ListConsumerGroups(*rk, call.options.get(), call.queue.get());
  absl::StatusOr<RdKafkaEventPtr> event = call.Wait("listing groups");
  if (!event.ok()) return event.status();
  const rd_kafka_ListConsumerGroups_result_t* result =
      rd_kafka_event_ListConsumerGroups_result(event->get());
  size_t errors = 0;
  const rd_kafka_error_t** error =
      rd_kafka_ListConsumerGroups_result_errors(result, &errors);
  // Each broker lists the groups it coordinates: one that did not answer
  // would leave some groups out, so that is an error, not a short list.
  if (errors > 0) return ErrorStatus(error[0], "listing groups");
  size_t n = 0;
  const rd_kafka_ConsumerGroupListing_t** listings =
      rd_kafka_ListConsumerGroups_result_valid(result, &n);
  std::vector<GroupSummary> out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(
        {rd_kafka_ConsumerGroupListing_group_id(listings[i]),
         ConsumerGroupState(rd_kafka_ConsumerGroupListing_state(listings[i])),
         rd_kafka_ConsumerGroupListing_is_simple_consumer_group(listings[i]) !=
             0});
  }
  std::sort(out.begin(), out.end(),
            [](const GroupSummary& a, const GroupSummary& b) {
              return a.group_id < b.group_id;
            });
  return out;
}

absl::StatusOr<GroupDescription> Admin::DescribeGroupMembers(
    rd_kafka_t* rk, const std::string& group, absl::Duration timeout) {
  return RetryWhileCoordinatorMoves(timeout, [&](absl::Duration left) {
    return DescribeGroupMembersOnce(rk, group, left);
  });
}

absl::StatusOr<GroupDescription> Admin::DescribeGroupMembersOnce(
    rd_kafka_t* rk, const std::string& group, absl::Duration timeout) {
  const std::string what = absl::StrCat("group ", group);
  Call call(this, rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS, timeout);
  const char* groups[] = {group.c_str()};
  rd_kafka_DescribeConsumerGroups(rk, groups, 1, call.options.get(),
                                  call.queue.get());
  absl::StatusOr<RdKafkaEventPtr> event = call.Wait(what);
  if (!event.ok()) return event.status();
  size_t n = 0;
  const rd_kafka_ConsumerGroupDescription_t** described =
      rd_kafka_DescribeConsumerGroups_result_groups(
          rd_kafka_event_DescribeConsumerGroups_result(event->get()), &n);
  if (n != 1) {
    return absl::InternalError(
        absl::StrCat(what, ": Kafka answered for ", n, " groups"));
  }
  const rd_kafka_ConsumerGroupDescription_t* g = described[0];
  if (const rd_kafka_error_t* error = rd_kafka_ConsumerGroupDescription_error(g);
      error != nullptr &&
      rd_kafka_error_code(error) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrorStatus(error, what);
  }
  GroupDescription out;
  out.group_id = group;
  out.state = ConsumerGroupState(rd_kafka_ConsumerGroupDescription_state(g));
  if (const char* assignor = rd_kafka_ConsumerGroupDescription_partition_assignor(g);
      assignor != nullptr) {
    out.partition_assignor = assignor;
  }
  if (const rd_kafka_Node_t* coordinator =
          rd_kafka_ConsumerGroupDescription_coordinator(g);
      coordinator != nullptr) {
    out.coordinator = rd_kafka_Node_id(coordinator);
  }
  const size_t members = rd_kafka_ConsumerGroupDescription_member_count(g);
  for (size_t i = 0; i < members; ++i) {
    const rd_kafka_MemberDescription_t* m =
        rd_kafka_ConsumerGroupDescription_member(g, i);
    GroupMemberDescription member;
    member.member_id = rd_kafka_MemberDescription_consumer_id(m);
    member.client_id = rd_kafka_MemberDescription_client_id(m);
    member.host = rd_kafka_MemberDescription_host(m);
    if (const rd_kafka_MemberAssignment_t* a =
            rd_kafka_MemberDescription_assignment(m);
        a != nullptr) {
      if (const rd_kafka_topic_partition_list_t* list =
              rd_kafka_MemberAssignment_partitions(a);
          list != nullptr) {
        for (int j = 0; j < list->cnt; ++j) {
          member.assignment.push_back(
              {list->elems[j].topic, list->elems[j].partition});
        }
      }
    }
    std::sort(member.assignment.begin(), member.assignment.end());
    out.members.push_back(std::move(member));
  }
  std::sort(out.members.begin(), out.members.end(),
            [](const GroupMemberDescription& a, const GroupMemberDescription& b) {
              return a.member_id < b.member_id;
            });
  return out;
}

absl::StatusOr<std::map<GroupPartition, int64_t>> Admin::CommittedOffsets(
    rd_kafka_t* rk, const std::string& group,
    const std::vector<GroupPartition>* partitions, absl::Duration timeout) {
  return RetryWhileCoordinatorMoves(timeout, [&](absl::Duration left) {
    return CommittedOffsetsOnce(rk, group, partitions, left);
  });
}

absl::StatusOr<std::map<GroupPartition, int64_t>> Admin::CommittedOffsetsOnce(
    rd_kafka_t* rk, const std::string& group,
    const std::vector<GroupPartition>* partitions, absl::Duration timeout) {
  const std::string what = absl::StrCat("group ", group);
  RdKafkaTopicPartitionListPtr list;
  if (partitions != nullptr) {
    list = PartitionList(*partitions, RD_KAFKA_OFFSET_INVALID);
  }
  rd_kafka_ListConsumerGroupOffsets_t* request =
      rd_kafka_ListConsumerGroupOffsets_new(group.c_str(), list.get());
  absl::Cleanup destroy = [request] {
    rd_kafka_ListConsumerGroupOffsets_destroy(request);
  };
  Call call(this, rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS, timeout);
  rd_kafka_ListConsumerGroupOffsets_t* requests[] = {request};
  rd_kafka_ListConsumerGroupOffsets(rk, requests, 1, call.options.get(),
                                    call.queue.get());
  absl::StatusOr<RdKafkaEventPtr> event = call.Wait(what);
  if (!event.ok()) return event.status();
  size_t n = 0;
  const rd_kafka_group_result_t** groups =
      rd_kafka_ListConsumerGroupOffsets_result_groups(
          rd_kafka_event_ListConsumerGroupOffsets_result(event->get()), &n);
  std::map<GroupPartition, int64_t> out;
  for (size_t i = 0; i < n; ++i) {
    if (absl::Status s = GroupResultStatus(groups[i], what); !s.ok()) return s;
    const rd_kafka_topic_partition_list_t* offsets =
        rd_kafka_group_result_partitions(groups[i]);
    for (int j = 0; offsets != nullptr && j < offsets->cnt; ++j) {
      const rd_kafka_topic_partition_t& tp = offsets->elems[j];
      out[{tp.topic, tp.partition}] = tp.offset >= 0 ? tp.offset : -1;
    }
  }
  return out;
}

absl::StatusOr<GroupDescription> Admin::DescribeGroup(const std::string& group,
                                                      absl::Duration timeout) {
  absl::StatusOr<rd_kafka_t*> rk = Handle();
  if (!rk.ok()) return rk.status();
  const absl::Time deadline = absl::Now() + timeout;
  auto left = [deadline] {
    return std::max(deadline - absl::Now(), absl::Milliseconds(1));
  };
  absl::StatusOr<GroupDescription> out = DescribeGroupMembers(*rk, group, left());
  if (!out.ok()) return out.status();
  absl::StatusOr<std::map<GroupPartition, int64_t>> committed =
      CommittedOffsets(*rk, group, nullptr, left());
  if (!committed.ok()) return committed.status();
  // Kafka reports a group it does not know as Dead with no members.
  if (out->members.empty() && committed->empty() &&
      (out->state == "Dead" || out->state == "Unknown")) {
    return absl::NotFoundError(absl::StrCat(
        "group ", group, " does not exist (no members, no committed offsets)"));
  }
  std::map<GroupPartition, GroupPartitionOffset> rows;
  for (const auto& [tp, offset] : *committed) {
    GroupPartitionOffset& row = rows[tp];
    row.committed_offset = offset;
  }
  for (const GroupMemberDescription& m : out->members) {
    for (const GroupPartition& tp : m.assignment) rows[tp].member_id = m.member_id;
  }
  std::vector<GroupPartition> partitions;
  for (const auto& [tp, row] : rows) partitions.push_back(tp);
  absl::StatusOr<std::map<GroupPartition, int64_t>> ends =
      ListOffsets(*rk, partitions, RD_KAFKA_OFFSET_SPEC_LATEST, left(),
                  absl::StrCat("group ", group));
  if (!ends.ok()) return ends.status();
  for (auto& [tp, row] : rows) {
    row.topic = tp.topic;
    row.partition = tp.partition;
    if (auto it = ends->find(tp); it != ends->end()) row.high_watermark = it->second;
    // As kafka-consumer-groups.sh: the log end minus the committed offset,
    // unknown ("-") when nothing is committed.
    if (row.committed_offset >= 0 && row.high_watermark >= 0) {
      row.lag = row.high_watermark - row.committed_offset;
      out->total_lag += row.lag;
    }
    out->offsets.push_back(row);
  }
  return out;
}

absl::StatusOr<std::vector<PartitionOffsetChange>> Admin::ResetGroupOffsets(
    const OffsetReset& reset, absl::Duration timeout) {
  absl::StatusOr<rd_kafka_t*> rk = Handle();
  if (!rk.ok()) return rk.status();
  const absl::Time deadline = absl::Now() + timeout;
  auto left = [deadline] {
    return std::max(deadline - absl::Now(), absl::Milliseconds(1));
  };
  const std::string what = absl::StrCat("group ", reset.group_id);
  absl::StatusOr<TopicDescription> topic = DescribeTopicPartitions(
      *rk, reset.topic, left());
  if (!topic.ok()) return topic.status();
  std::vector<GroupPartition> partitions;
  if (reset.partitions.empty()) {
    for (const PartitionDescription& d : topic->partitions) {
      partitions.push_back({reset.topic, d.partition});
    }
  } else {
    std::set<int32_t> known;
    for (const PartitionDescription& d : topic->partitions) known.insert(d.partition);
    for (int32_t p : std::set<int32_t>(reset.partitions.begin(),
                                       reset.partitions.end())) {
      if (!known.count(p)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "topic ", reset.topic, " has no partition ", p, " (it has ",
            known.size(), ": 0..", known.size() - 1, ")"));
      }
      partitions.push_back({reset.topic, p});
    }
  }
  absl::StatusOr<GroupDescription> group =
      DescribeGroupMembers(*rk, reset.group_id, left());
  if (!group.ok()) return group.status();
  if (!group->members.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " has ", group->members.size(), " member",
        group->members.size() == 1 ? "" : "s", " (state ", group->state,
        "): offsets can only be reset while no subscriber is connected; "
        "stop its subscribers first"));
  }
  absl::StatusOr<std::map<GroupPartition, int64_t>> previous =
      CommittedOffsets(*rk, reset.group_id, &partitions, left());
  if (!previous.ok()) return previous.status();
  const std::string topic_what = absl::StrCat("topic ", reset.topic);
  absl::StatusOr<std::map<GroupPartition, int64_t>> low =
      ListOffsets(*rk, partitions, RD_KAFKA_OFFSET_SPEC_EARLIEST, left(), topic_what);
  if (!low.ok()) return low.status();
  absl::StatusOr<std::map<GroupPartition, int64_t>> high =
      ListOffsets(*rk, partitions, RD_KAFKA_OFFSET_SPEC_LATEST, left(), topic_what);
  if (!high.ok()) return high.status();
  std::map<GroupPartition, int64_t> at_time;
  if (reset.to == OffsetReset::To::kTime) {
    absl::StatusOr<std::map<GroupPartition, int64_t>> found = ListOffsets(
        *rk, partitions, std::max<int64_t>(0, absl::ToUnixMillis(reset.time)),
        left(), topic_what);
    if (!found.ok()) return found.status();
    at_time = *std::move(found);
  }
  std::vector<PartitionOffsetChange> out;
  for (const GroupPartition& tp : partitions) {
    const int64_t lo = (*low)[tp];
    const int64_t hi = (*high)[tp];
    if (lo < 0 || hi < 0) {
      return absl::UnavailableError(absl::StrCat(
          "topic ", tp.topic, " partition ", tp.partition,
          ": its leader did not answer for its offsets; try again"));
    }
    PartitionOffsetChange change{tp.topic, tp.partition, -1, -1};
    if (auto it = previous->find(tp); it != previous->end()) {
      change.previous_offset = it->second;
    }
    switch (reset.to) {
      case OffsetReset::To::kEarliest:
        change.new_offset = lo;
        break;
      case OffsetReset::To::kLatest:
        change.new_offset = hi;
        break;
      case OffsetReset::To::kTime:
        // No record at or after the time: the end of the log, as
        // kafka-consumer-groups.sh --to-datetime does.
        change.new_offset = at_time[tp] >= 0 ? at_time[tp] : hi;
        break;
      case OffsetReset::To::kOffset:
        change.new_offset = std::clamp(reset.offset, lo, hi);
        break;
    }
    out.push_back(change);
  }
  if (reset.dry_run) return out;

  RdKafkaTopicPartitionListPtr list(
      rd_kafka_topic_partition_list_new(static_cast<int>(out.size())));
  for (const PartitionOffsetChange& c : out) {
    rd_kafka_topic_partition_list_add(list.get(), c.topic.c_str(), c.partition)
        ->offset = c.new_offset;
  }
  rd_kafka_AlterConsumerGroupOffsets_t* request =
      rd_kafka_AlterConsumerGroupOffsets_new(reset.group_id.c_str(), list.get());
  absl::Cleanup destroy = [request] {
    rd_kafka_AlterConsumerGroupOffsets_destroy(request);
  };
  Call call(this, *rk, RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS, left());
  rd_kafka_AlterConsumerGroupOffsets_t* requests[] = {request};
  rd_kafka_AlterConsumerGroupOffsets(*rk, requests, 1, call.options.get(),
                                     call.queue.get());
  absl::StatusOr<RdKafkaEventPtr> event = call.Wait(what);
  if (!event.ok()) return event.status();
  size_t n = 0;
  const rd_kafka_group_result_t** groups =
      rd_kafka_AlterConsumerGroupOffsets_result_groups(
          rd_kafka_event_AlterConsumerGroupOffsets_result(event->get()), &n);
  for (size_t i = 0; i < n; ++i) {
    // A subscriber that joined since the check above makes Kafka refuse
    // the commit (UNKNOWN_MEMBER_ID): FailedPrecondition.
    if (absl::Status s = GroupResultStatus(groups[i], what); !s.ok()) return s;
  }
  return out;
}

absl::StatusOr<TopicDescription> Admin::DescribeTopicPartitions(
    rd_kafka_t* rk, const std::string& topic, absl::Duration timeout) {
  const std::string what = absl::StrCat("topic ", topic);
  const char* names[] = {topic.c_str()};
  rd_kafka_TopicCollection_t* collection =
      rd_kafka_TopicCollection_of_topic_names(names, 1);
  absl::Cleanup destroy = [collection] {
    rd_kafka_TopicCollection_destroy(collection);
  };
  Call call(this, rk, RD_KAFKA_ADMIN_OP_DESCRIBETOPICS, timeout);
  rd_kafka_DescribeTopics(rk, collection, call.options.get(), call.queue.get());
  absl::StatusOr<RdKafkaEventPtr> event = call.Wait(what);
  if (!event.ok()) return event.status();
  size_t n = 0;
  const rd_kafka_TopicDescription_t** topics =
      rd_kafka_DescribeTopics_result_topics(
          rd_kafka_event_DescribeTopics_result(event->get()), &n);
  if (n != 1) {
    return absl::InternalError(
        absl::StrCat(what, ": Kafka answered for ", n, " topics"));
  }
  if (const rd_kafka_error_t* error = rd_kafka_TopicDescription_error(topics[0]);
      rd_kafka_error_code(error) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrorStatus(error, what);
  }
  TopicDescription out;
  out.name = rd_kafka_TopicDescription_name(topics[0]);
  if (const rd_kafka_Uuid_t* id = rd_kafka_TopicDescription_topic_id(topics[0]);
      id != nullptr) {
    out.topic_id = rd_kafka_Uuid_base64str(id);
  }
  out.internal = rd_kafka_TopicDescription_is_internal(topics[0]) != 0;
  size_t partitions = 0;
  const rd_kafka_TopicPartitionInfo_t** infos =
      rd_kafka_TopicDescription_partitions(topics[0], &partitions);
  for (size_t p = 0; p < partitions; ++p) {
    PartitionDescription d;
    d.partition = rd_kafka_TopicPartitionInfo_partition(infos[p]);
    if (const rd_kafka_Node_t* leader = rd_kafka_TopicPartitionInfo_leader(infos[p]);
        leader != nullptr) {
      d.leader = rd_kafka_Node_id(leader);
    }
    size_t count = 0;
    const rd_kafka_Node_t** nodes =
        rd_kafka_TopicPartitionInfo_replicas(infos[p], &count);
    for (size_t i = 0; i < count; ++i) d.replicas.push_back(rd_kafka_Node_id(nodes[i]));
    nodes = rd_kafka_TopicPartitionInfo_isr(infos[p], &count);
    for (size_t i = 0; i < count; ++i) d.isr.push_back(rd_kafka_Node_id(nodes[i]));
    out.partitions.push_back(std::move(d));
  }
  std::sort(out.partitions.begin(), out.partitions.end(),
            [](const PartitionDescription& a, const PartitionDescription& b) {
              return a.partition < b.partition;
            });
  return out;
}

}  // namespace eventbus::kafka
