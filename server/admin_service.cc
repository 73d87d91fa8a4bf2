#include "server/admin_service.h"

#include <pthread.h>

#include <algorithm>
#include <utility>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/event_codec.h"
#include "server/grpc_status.h"

namespace eventbus::server {
namespace {

// Kafka's limit on replicas of a partition (an int16 on the wire).
constexpr int32_t kMaxReplicationFactor = 32767;
// Topics get at most this many partitions through the API: far above any
// real need, and low enough that a typo cannot overload the cluster.
constexpr int32_t kMaxPartitions = 10000;
// The longest a call waits for Kafka, whatever its deadline.
constexpr absl::Duration kMaxTimeout = absl::Minutes(10);

absl::Status ValidateGroupId(absl::string_view group) {
  if (group.empty()) {
    return absl::InvalidArgumentError("group_id: a consumer group is required");
  }
  for (unsigned char c : group) {
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          "group_id: must not contain control characters");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateCreate(const v1::CreateTopicRequest& r) {
  if (absl::Status s = ValidateTopicName(r.topic()); !s.ok()) return s;
  if (r.partitions() < 0 || r.partitions() > kMaxPartitions) {
    return absl::InvalidArgumentError(
        absl::StrCat("partitions: ", r.partitions(), " is not 1..",
                     kMaxPartitions, " (0: the broker's default)"));
  }
  if (r.replication_factor() < 0 ||
      r.replication_factor() > kMaxReplicationFactor) {
    return absl::InvalidArgumentError(
        absl::StrCat("replication_factor: ", r.replication_factor(),
                     " is not 1..", kMaxReplicationFactor,
                     " (0: the broker's default)"));
  }
  for (const auto& [name, value] : r.configs()) {
    if (name.empty()) {
      return absl::InvalidArgumentError("configs: a config name is empty");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateReset(const v1::ResetGroupOffsetsRequest& r) {
  if (absl::Status s = ValidateGroupId(r.group_id()); !s.ok()) return s;
  if (absl::Status s = ValidateTopicName(r.topic()); !s.ok()) return s;
  for (int32_t p : r.partitions()) {
    if (p < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("partitions: ", p, " is not a partition number"));
    }
  }
  switch (r.to_case()) {
    case v1::ResetGroupOffsetsRequest::kEarliest:
    case v1::ResetGroupOffsetsRequest::kLatest:
      if (!(r.earliest() || r.latest())) {
        return absl::InvalidArgumentError(
            "earliest/latest: set to true to reset there");
      }
      return absl::OkStatus();
    case v1::ResetGroupOffsetsRequest::kTime:
      if (r.time().seconds() < 0 || r.time().nanos() < 0 ||
          r.time().nanos() > 999999999) {
        return absl::InvalidArgumentError(
            "time: not a valid timestamp at or after 1970-01-01");
      }
      return absl::OkStatus();
    case v1::ResetGroupOffsetsRequest::kOffset:
      if (r.offset() < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("offset: ", r.offset(), " is negative"));
      }
      return absl::OkStatus();
    case v1::ResetGroupOffsetsRequest::TO_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError(
      "to: say where to reset: one of earliest, latest, time or offset");
}

}  // namespace

AdminService::AdminService(kafka::Admin* admin, AdminOptions options)
    : admin_(admin), options_(options) {
  for (int i = 0; i < std::max(1, options_.workers); ++i) {
    workers_.emplace_back([this] {
      pthread_setname_np(pthread_self(), "eb-admin");
      WorkerLoop();
    });
  }
}

AdminService::~AdminService() {
  Drain();
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : workers_) t.join();
}

void AdminService::Drain() { admin_->Cancel(); }

void AdminService::WorkerLoop() {
  while (true) {
    absl::AnyInvocable<void()> job;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](AdminService* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
            return s->stopping_ || !s->queue_.empty();
          },
          this));
      // Jobs still queued at the end run too: with the admin client
      // cancelled each ends at once, and its call gets its status.
      if (queue_.empty()) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job();
  }
}

grpc::ServerUnaryReactor* AdminService::Run(
    grpc::CallbackServerContext* context, const absl::Status& invalid,
    absl::AnyInvocable<absl::Status(absl::Duration timeout)> work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!invalid.ok()) {
    reactor->Finish(ToGrpcStatus(invalid));
    return reactor;
  }
  absl::Duration timeout = options_.default_timeout;
  if (const absl::Time deadline = absl::FromChrono(context->deadline());
      deadline != absl::InfiniteFuture()) {
    timeout = std::min(kMaxTimeout, deadline - absl::Now());
  }
  if (timeout <= absl::ZeroDuration()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                 "the call's deadline has passed"));
    return reactor;
  }
  absl::MutexLock lock(&mu_);
  if (queue_.size() >= options_.max_queued) {
    reactor->Finish(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat(queue_.size(),
                     " Admin calls are already waiting for Kafka; try again")));
    return reactor;
  }
  queue_.push_back([reactor, timeout, work = std::move(work)]() mutable {
    reactor->Finish(ToGrpcStatus(work(timeout)));
  });
  return reactor;
}

absl::Status AdminService::CheckChangesAllowed(absl::string_view method) const {
  if (options_.allow_changes) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      method,
      " changes the Kafka cluster and this sidecar has admin.allow_changes "
      "off; set admin.allow_changes: true in its configuration to allow it"));
}

grpc::ServerUnaryReactor* AdminService::CreateTopic(
    grpc::CallbackServerContext* context, const v1::CreateTopicRequest* request,
    v1::CreateTopicResponse* response) {
  absl::Status invalid = CheckChangesAllowed("CreateTopic");
  if (invalid.ok()) invalid = ValidateCreate(*request);
  return Run(context, invalid,
             [this, request, response,
              peer = context->peer()](absl::Duration timeout) {
               kafka::NewTopic topic;
               topic.name = request->topic();
               if (request->partitions() > 0) topic.partitions = request->partitions();
               if (request->replication_factor() > 0) {
                 topic.replication_factor = request->replication_factor();
               }
               topic.configs.insert(request->configs().begin(),
                                    request->configs().end());
               absl::Status status = admin_->CreateTopic(topic, timeout);
               if (status.ok()) {
                 spdlog::info(
                     "admin: created topic {} (partitions {}, replication "
                     "factor {}, {} configs) for {}",
                     topic.name,
                     topic.partitions > 0 ? absl::StrCat(topic.partitions)
                                          : "default",
                     topic.replication_factor > 0
                         ? absl::StrCat(topic.replication_factor)
                         : "default",
                     topic.configs.size(), peer);
                 response->set_topic(topic.name);
               }
               return status;
             });
}

grpc::ServerUnaryReactor* AdminService::ListTopics(
    grpc::CallbackServerContext* context, const v1::ListTopicsRequest* request,
    v1::ListTopicsResponse* response) {
  return Run(context, absl::OkStatus(),
             [this, request, response](absl::Duration timeout) {
               absl::StatusOr<std::vector<kafka::TopicSummary>> topics =
                   admin_->ListTopics(request->include_internal(), timeout);
               if (!topics.ok()) return topics.status();
               for (const kafka::TopicSummary& t : *topics) {
                 v1::TopicSummary* out = response->add_topics();
                 out->set_name(t.name);
                 out->set_partitions(t.partitions);
                 out->set_replication_factor(t.replication_factor);
                 out->set_internal(t.internal);
               }
               return absl::OkStatus();
             });
}

grpc::ServerUnaryReactor* AdminService::DescribeTopic(
    grpc::CallbackServerContext* context,
    const v1::DescribeTopicRequest* request, v1::TopicDescription* response) {
  return Run(context, ValidateTopicName(request->topic()),
             [this, request, response](absl::Duration timeout) {
               absl::StatusOr<kafka::TopicDescription> topic =
                   admin_->DescribeTopic(request->topic(), timeout);
               if (!topic.ok()) return topic.status();
               response->set_name(topic->name);
               response->set_topic_id(topic->topic_id);
               response->set_internal(topic->internal);
               for (const kafka::PartitionDescription& p : topic->partitions) {
                 v1::TopicPartitionDescription* out = response->add_partitions();
                 out->set_partition(p.partition);
                 out->set_leader(p.leader);
                 out->mutable_replicas()->Add(p.replicas.begin(), p.replicas.end());
                 out->mutable_isr()->Add(p.isr.begin(), p.isr.end());
                 out->set_low_watermark(p.low_watermark);
                 out->set_high_watermark(p.high_watermark);
               }
               for (const kafka::TopicConfigEntry& c : topic->configs) {
                 v1::TopicConfig* out = response->add_configs();
                 out->set_name(c.name);
                 out->set_value(c.value);
                 out->set_source(c.source);
                 out->set_is_default(c.is_default);
                 out->set_sensitive(c.sensitive);
                 out->set_read_only(c.read_only);
               }
               return absl::OkStatus();
             });
}

grpc::ServerUnaryReactor* AdminService::DeleteTopic(
    grpc::CallbackServerContext* context, const v1::DeleteTopicRequest* request,
    v1::DeleteTopicResponse* response) {
  absl::Status invalid = CheckChangesAllowed("DeleteTopic");
  if (invalid.ok()) invalid = ValidateTopicName(request->topic());
  return Run(context, invalid,
             [this, request, response,
              peer = context->peer()](absl::Duration timeout) {
               absl::Status status = admin_->DeleteTopic(request->topic(), timeout);
               if (status.ok()) {
                 spdlog::info("admin: deleted topic {} for {}", request->topic(),
                              peer);
                 response->set_topic(request->topic());
               }
               return status;
             });
}

grpc::ServerUnaryReactor* AdminService::ListGroups(
    grpc::CallbackServerContext* context, const v1::ListGroupsRequest* /*request*/,
    v1::ListGroupsResponse* response) {
  return Run(context, absl::OkStatus(), [this, response](absl::Duration timeout) {
    absl::StatusOr<std::vector<kafka::GroupSummary>> groups =
        admin_->ListGroups(timeout);
    if (!groups.ok()) return groups.status();
    for (const kafka::GroupSummary& g : *groups) {
      v1::GroupSummary* out = response->add_groups();
      out->set_group_id(g.group_id);
      out->set_state(g.state);
      out->set_simple(g.simple);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::DescribeGroup(
    grpc::CallbackServerContext* context,
    const v1::DescribeGroupRequest* request, v1::GroupDescription* response) {
  return Run(context, ValidateGroupId(request->group_id()),
             [this, request, response](absl::Duration timeout) {
               absl::StatusOr<kafka::GroupDescription> group =
                   admin_->DescribeGroup(request->group_id(), timeout);
               if (!group.ok()) return group.status();
               response->set_group_id(group->group_id);
               response->set_state(group->state);
               response->set_partition_assignor(group->partition_assignor);
               response->set_coordinator(group->coordinator);
               for (const kafka::GroupMemberDescription& m : group->members) {
                 v1::GroupMember* out = response->add_members();
                 out->set_member_id(m.member_id);
                 out->set_client_id(m.client_id);
                 out->set_host(m.host);
                 for (const kafka::GroupPartition& tp : m.assignment) {
                   v1::GroupTopicPartition* a = out->add_assignment();
                   a->set_topic(tp.topic);
                   a->set_partition(tp.partition);
                 }
               }
               for (const kafka::GroupPartitionOffset& o : group->offsets) {
                 v1::GroupPartitionOffset* out = response->add_offsets();
                 out->set_topic(o.topic);
                 out->set_partition(o.partition);
                 out->set_committed_offset(o.committed_offset);
                 out->set_high_watermark(o.high_watermark);
                 out->set_lag(o.lag);
                 out->set_member_id(o.member_id);
               }
               response->set_total_lag(group->total_lag);
               return absl::OkStatus();
             });
}

grpc::ServerUnaryReactor* AdminService::ResetGroupOffsets(
    grpc::CallbackServerContext* context,
    const v1::ResetGroupOffsetsRequest* request,
    v1::ResetGroupOffsetsResponse* response) {
  absl::Status invalid = request->dry_run()
                             ? absl::OkStatus()
                             : CheckChangesAllowed("ResetGroupOffsets");
  if (invalid.ok()) invalid = ValidateReset(*request);
  return Run(
      context, invalid,
      [this, request, response, peer = context->peer()](absl::Duration timeout) {
        kafka::OffsetReset reset;
        reset.group_id = request->group_id();
        reset.topic = request->topic();
        reset.partitions.assign(request->partitions().begin(),
                                request->partitions().end());
        reset.dry_run = request->dry_run();
        switch (request->to_case()) {
          case v1::ResetGroupOffsetsRequest::kEarliest:
            reset.to = kafka::OffsetReset::To::kEarliest;
            break;
          case v1::ResetGroupOffsetsRequest::kLatest:
            reset.to = kafka::OffsetReset::To::kLatest;
            break;
          case v1::ResetGroupOffsetsRequest::kTime:
            reset.to = kafka::OffsetReset::To::kTime;
            reset.time = absl::FromUnixSeconds(request->time().seconds()) +
                         absl::Nanoseconds(request->time().nanos());
            break;
          case v1::ResetGroupOffsetsRequest::kOffset:
          case v1::ResetGroupOffsetsRequest::TO_NOT_SET:
            reset.to = kafka::OffsetReset::To::kOffset;
            reset.offset = request->offset();
            break;
        }
        absl::StatusOr<std::vector<kafka::PartitionOffsetChange>> changes =
            admin_->ResetGroupOffsets(reset, timeout);
        if (!changes.ok()) return changes.status();
        std::vector<std::string> moved;
        for (const kafka::PartitionOffsetChange& c : *changes) {
          v1::GroupOffsetReset* out = response->add_offsets();
          out->set_topic(c.topic);
          out->set_partition(c.partition);
          out->set_previous_offset(c.previous_offset);
          out->set_new_offset(c.new_offset);
          moved.push_back(absl::StrCat(c.partition, ": ", c.previous_offset,
                                       " -> ", c.new_offset));
        }
        response->set_applied(!reset.dry_run);
        if (!reset.dry_run) {
          spdlog::info("admin: reset offsets of group {} on topic {} ({}) for {}",
                       reset.group_id, reset.topic, absl::StrJoin(moved, ", "),
                       peer);
        }
        return absl::OkStatus();
      });
}

}  // namespace eventbus::server
