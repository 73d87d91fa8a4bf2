#pragma once

// The eventbus.v1.Admin gRPC service: topics and consumer groups, on
// kafka::Admin. Kafka answers in milliseconds to seconds, so the calls run
// on two worker threads of their own, never on gRPC's callback threads.

#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "eventbus/v1/admin.grpc.pb.h"
#include "kafka/admin.h"

namespace eventbus::server {

struct AdminOptions {
  // admin.allow_changes: serve CreateTopic, DeleteTopic and (not dry-run)
  // ResetGroupOffsets; otherwise they end with PERMISSION_DENIED.
  bool allow_changes = false;
  // Deadline of a call that carries none.
  absl::Duration default_timeout = absl::Seconds(30);
  // Calls waiting for a worker; more end with RESOURCE_EXHAUSTED.
  size_t max_queued = 64;
  int workers = 2;
};

class AdminService final : public v1::Admin::CallbackService {
 public:
  // `admin` must outlive this service.
  AdminService(kafka::Admin* admin, AdminOptions options);
  // Ends waiting calls with UNAVAILABLE and joins the workers.
  ~AdminService() override;

  // Shutdown: calls in progress and later ones end promptly with
  // UNAVAILABLE.
  void Drain();

  grpc::ServerUnaryReactor* CreateTopic(grpc::CallbackServerContext* context,
                                        const v1::CreateTopicRequest* request,
                                        v1::CreateTopicResponse* response) override;
  grpc::ServerUnaryReactor* ListTopics(grpc::CallbackServerContext* context,
                                       const v1::ListTopicsRequest* request,
                                       v1::ListTopicsResponse* response) override;
  grpc::ServerUnaryReactor* DescribeTopic(grpc::CallbackServerContext* context,
                                          const v1::DescribeTopicRequest* request,
                                          v1::TopicDescription* response) override;
  grpc::ServerUnaryReactor* DeleteTopic(grpc::CallbackServerContext* context,
                                        const v1::DeleteTopicRequest* request,
                                        v1::DeleteTopicResponse* response) override;
  grpc::ServerUnaryReactor* ListGroups(grpc::CallbackServerContext* context,
                                       const v1::ListGroupsRequest* request,
                                       v1::ListGroupsResponse* response) override;
  grpc::ServerUnaryReactor* DescribeGroup(grpc::CallbackServerContext* context,
                                          const v1::DescribeGroupRequest* request,
                                          v1::GroupDescription* response) override;
  grpc::ServerUnaryReactor* ResetGroupOffsets(
      grpc::CallbackServerContext* context,
      const v1::ResetGroupOffsetsRequest* request,
      v1::ResetGroupOffsetsResponse* response) override;

 private:
  // Runs `work` (given the call's timeout) on a worker and finishes the call
  // with its status; finishes at once with `invalid` when that is not OK.
  grpc::ServerUnaryReactor* Run(
      grpc::CallbackServerContext* context, const absl::Status& invalid,
      absl::AnyInvocable<absl::Status(absl::Duration timeout)> work);
  // PERMISSION_DENIED naming admin.allow_changes, unless changes are on.
  absl::Status CheckChangesAllowed(absl::string_view method) const;
  void WorkerLoop();

  kafka::Admin* const admin_;
  const AdminOptions options_;

  absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace eventbus::server
