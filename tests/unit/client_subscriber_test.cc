// client::Subscriber against a tiny fake EventBus service whose Subscribe
// sends scripted deliveries and records every request it reads.

#include "client/cpp/subscriber.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace eventbus::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

v1::Delivery MakeDelivery(uint64_t id) {
  v1::Delivery d;
  d.set_delivery_id(id);
  d.set_topic("orders");
  d.set_offset(static_cast<int64_t>(id) - 1);
  d.set_attempt(1);
  d.mutable_event()->set_type("com.example.ping");
  d.mutable_event()->set_data(absl::StrCat("event-", id));
  return d;
}

// What a manual-ack handler saw: the delivery ids the app settles with, by
// the event's data ("event-<server id>") and in arrival order.
class Received {
 public:
  Subscriber::Handler Handler() {
    return [this](const v1::Delivery& d) {
      absl::MutexLock lock(&mu_);
      by_data_[d.event().data()] = d.delivery_id();
      in_order_.push_back(d.delivery_id());
      return absl::OkStatus();
    };
  }
  bool Wait(size_t n, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return in_order_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  uint64_t Of(const std::string& data) {
    absl::MutexLock lock(&mu_);
    return by_data_.at(data);
  }
  std::vector<uint64_t> InOrder() {
    absl::MutexLock lock(&mu_);
    return in_order_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, uint64_t> by_data_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> in_order_ ABSL_GUARDED_BY(mu_);
};

// Subscribe: reads the subscription, writes each scripted batch of
// deliveries (one write in flight), answers ids in `bad_ids` with an
// AckError, records every ack/nack/dead-letter, and ends the stream OK when
// the client half-closes (or with `end_with` when the test says so).
class FakeSubscribeService final : public v1::EventBus::CallbackService {
 public:
  struct Recorded {
    std::vector<uint64_t> acked;
    std::vector<uint64_t> nacked;
    std::vector<int64_t> nack_delays_ms;  // -1: none given
    std::vector<uint64_t> dead_lettered;
    std::vector<std::string> dead_letter_reasons;
    std::vector<uint64_t> extended;
    std::vector<int64_t> extend_deadlines_ms;
    int settle_messages = 0;
    std::optional<v1::Subscription> subscription;
    bool half_closed = false;
  };

  grpc::ServerBidiReactor<v1::SubscribeRequest, v1::SubscribeResponse>*
  Subscribe(grpc::CallbackServerContext* context) override {
    auto* r = new Reactor(this);
    {
      absl::MutexLock lock(&mu_);
      reactor_ = r;
      if (!old_server_) {
        context->AddInitialMetadata("eventbus-features", "modify_ack_deadline");
      }
    }
    r->Begin();
    return r;
  }

  // Queues deliveries to send (as one SubscribeResponse).
  void Send(std::vector<v1::Delivery> deliveries) {
    absl::MutexLock lock(&mu_);
    v1::SubscribeResponse resp;
    for (auto& d : deliveries) *resp.add_deliveries() = std::move(d);
    outbox_.push_back(std::move(resp));
    if (reactor_ != nullptr) reactor_->MaybeWriteLocked();
  }
  // Acts as a sidecar from before modify_ack_deadline: does not list it in
  // the initial metadata, and ends the stream when it gets one.
  void ActAsOldServer() {
    absl::MutexLock lock(&mu_);
    old_server_ = true;
  }
  void SetBadIds(std::set<uint64_t> ids) {
    absl::MutexLock lock(&mu_);
    bad_ids_ = std::move(ids);
  }
  // Ends the open stream with `status`.
  void EndStream(grpc::Status status) {
    absl::MutexLock lock(&mu_);
    if (reactor_ != nullptr) reactor_->FinishLocked(std::move(status));
  }

  Recorded recorded() {
    absl::MutexLock lock(&mu_);
    return recorded_;
  }
  // Waits until `n` ids were settled in any way; false on timeout.
  bool WaitSettled(size_t n, absl::Duration timeout = absl::Seconds(5)) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return recorded_.acked.size() + recorded_.nacked.size() +
                 recorded_.dead_lettered.size() >=
             n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  bool WaitSubscribed(absl::Duration timeout = absl::Seconds(5)) {
    absl::MutexLock lock(&mu_);
    auto subscribed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return recorded_.subscription.has_value();
    };
    return mu_.AwaitWithTimeout(absl::Condition(&subscribed), timeout);
  }

 private:
  class Reactor final : public grpc::ServerBidiReactor<v1::SubscribeRequest,
                                                       v1::SubscribeResponse> {
   public:
    explicit Reactor(FakeSubscribeService* s) : s_(s) {}
    void Begin() { StartRead(&request_); }

    void OnReadDone(bool ok) override {
      absl::MutexLock lock(&s_->mu_);
      if (!ok) {
        s_->recorded_.half_closed = true;
        FinishLocked(grpc::Status::OK);
        return;
      }
      Recorded& rec = s_->recorded_;
      switch (request_.request_case()) {
        case v1::SubscribeRequest::kSubscription:
          rec.subscription = request_.subscription();
          break;
        case v1::SubscribeRequest::kAck:
          ++rec.settle_messages;
          for (uint64_t id : request_.ack().delivery_ids()) {
            rec.acked.push_back(id);
            if (s_->bad_ids_.count(id)) {
              v1::AckError* e = errors_.add_ack_errors();
              e->set_delivery_id(id);
              e->mutable_status()->set_code(9);
              e->mutable_status()->set_message("no longer outstanding");
            }
          }
          break;
        case v1::SubscribeRequest::kNack:
          ++rec.settle_messages;
          for (uint64_t id : request_.nack().delivery_ids()) {
            rec.nacked.push_back(id);
            rec.nack_delays_ms.push_back(
                request_.nack().has_retry_delay()
                    ? request_.nack().retry_delay().seconds() * 1000 +
                          request_.nack().retry_delay().nanos() / 1000000
                    : -1);
          }
          break;
        case v1::SubscribeRequest::kModifyAckDeadline: {
          if (s_->old_server_) {
            FinishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                      "empty SubscribeRequest"));
            return;
          }
          const v1::ModifyAckDeadline& m = request_.modify_ack_deadline();
          for (uint64_t id : m.delivery_ids()) {
            rec.extended.push_back(id);
            if (s_->bad_ids_.count(id)) {
              v1::AckError* e = errors_.add_ack_errors();
              e->set_delivery_id(id);
              e->mutable_status()->set_code(9);
              e->mutable_status()->set_message("no longer outstanding");
            }
            rec.extend_deadlines_ms.push_back(m.ack_deadline().seconds() * 1000 +
                                              m.ack_deadline().nanos() / 1000000);
          }
          break;
        }
        case v1::SubscribeRequest::kDeadLetter:
          ++rec.settle_messages;
          for (uint64_t id : request_.dead_letter().delivery_ids()) {
            rec.dead_lettered.push_back(id);
            rec.dead_letter_reasons.push_back(request_.dead_letter().reason());
          }
          break;
        default:
          break;
      }
      if (errors_.ack_errors_size() > 0) {
        s_->outbox_.push_back(std::move(errors_));
        errors_.Clear();
      }
      MaybeWriteLocked();
      if (!finished_) StartRead(&request_);
    }

    void OnWriteDone(bool ok) override {
      absl::MutexLock lock(&s_->mu_);
      writing_ = false;
      if (ok) MaybeWriteLocked();
    }
    void OnCancel() override {
      absl::MutexLock lock(&s_->mu_);
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
    }
    void OnDone() override {
      {
        absl::MutexLock lock(&s_->mu_);
        if (s_->reactor_ == this) s_->reactor_ = nullptr;
      }
      delete this;
    }

    void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s_->mu_) {
      if (writing_ || finished_ || s_->outbox_.empty()) return;
      response_ = std::move(s_->outbox_.front());
      s_->outbox_.pop_front();
      writing_ = true;
      StartWrite(&response_);
    }
    void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s_->mu_) {
      if (finished_) return;
      finished_ = true;
      Finish(std::move(status));
    }

   private:
    FakeSubscribeService* const s_;
    v1::SubscribeRequest request_;
    v1::SubscribeResponse response_;
    v1::SubscribeResponse errors_;
    bool writing_ = false;
    bool finished_ = false;
  };

  absl::Mutex mu_;
  Reactor* reactor_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<v1::SubscribeResponse> outbox_ ABSL_GUARDED_BY(mu_);
  std::set<uint64_t> bad_ids_ ABSL_GUARDED_BY(mu_);
  bool old_server_ ABSL_GUARDED_BY(mu_) = false;
  Recorded recorded_ ABSL_GUARDED_BY(mu_);
};

class ClientSubscriberTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int port = 0;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    address_ = absl::StrCat("127.0.0.1:", port);
  }
  void TearDown() override {
    server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  }

  static SubscriberOptions Options() {
    SubscriberOptions o;
    o.topics = {"orders", "payments"};
    o.group = "billing";
    o.start = v1::START_POSITION_EARLIEST;
    o.max_outstanding_messages = 50;
    o.ack_deadline = absl::Seconds(12);
    o.max_delivery_attempts = 3;
    o.dead_letter_topic = "orders.dead";
    return o;
  }

  // Runs a Subscriber with `options` whose handler takes `handling` for the
  // one delivery sent; returns what the server saw.
  FakeSubscribeService::Recorded HandleOneSlowly(const SubscriberOptions& options,
                                                 absl::Duration handling) {
    Subscriber subscriber(address_, options);
    auto run = RunAsync(subscriber, [handling](const v1::Delivery&) {
      absl::SleepFor(handling);
      return absl::OkStatus();
    });
    EXPECT_TRUE(service_.WaitSubscribed());
    service_.Send({MakeDelivery(1)});
    EXPECT_TRUE(service_.WaitSettled(1));
    subscriber.Stop();
    EXPECT_TRUE(run.get().ok());
    return service_.recorded();
  }

  // Runs `subscriber` on a thread; the returned future has Run's status.
  std::future<absl::Status> RunAsync(Subscriber& subscriber,
                                     Subscriber::Handler handler) {
    return std::async(std::launch::async, [&subscriber, handler] {
      return subscriber.Run(handler);
    });
  }

  FakeSubscribeService service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

TEST_F(ClientSubscriberTest, SendsTheSubscriptionFirst) {
  Subscriber subscriber(address_, Options());
  auto run = RunAsync(subscriber, [](const v1::Delivery&) {
    return absl::OkStatus();
  });
  ASSERT_TRUE(service_.WaitSubscribed());
  subscriber.Stop();
  EXPECT_TRUE(run.get().ok());
  const auto rec = service_.recorded();
  ASSERT_TRUE(rec.subscription.has_value());
  const v1::Subscription& s = *rec.subscription;
  EXPECT_THAT(s.topics(), ElementsAre("orders", "payments"));
  EXPECT_EQ(s.group(), "billing");
  EXPECT_EQ(s.start_position(), v1::START_POSITION_EARLIEST);
  EXPECT_EQ(s.max_outstanding_messages(), 50);
  EXPECT_EQ(s.ack_deadline().seconds(), 12);
  EXPECT_EQ(s.max_delivery_attempts(), 3);
  EXPECT_EQ(s.dead_letter_topic(), "orders.dead");
  EXPECT_TRUE(rec.half_closed);
}

TEST_F(ClientSubscriberTest, AutoAckAcksOkAndNacksFailures) {
  Subscriber subscriber(address_, Options());
  auto run = RunAsync(subscriber, [](const v1::Delivery& d) {
    return d.offset() % 2 == 1 ? absl::OkStatus()
                                    : absl::InternalError("odd");
  });
  ASSERT_TRUE(service_.WaitSubscribed());
  service_.Send({MakeDelivery(1), MakeDelivery(2), MakeDelivery(3)});
  service_.Send({MakeDelivery(4)});
  ASSERT_TRUE(service_.WaitSettled(4));
  subscriber.Stop();
  EXPECT_TRUE(run.get().ok());
  const auto rec = service_.recorded();
  EXPECT_THAT(rec.acked, UnorderedElementsAreArray({2u, 4u}));
  EXPECT_THAT(rec.nacked, UnorderedElementsAreArray({1u, 3u}));
  EXPECT_THAT(rec.nack_delays_ms, ElementsAre(-1, -1));
  EXPECT_EQ(subscriber.deliveries(), 4);
}

TEST_F(ClientSubscriberTest, ManualAckNackAndDeadLetterFromAnyThread) {
  SubscriberOptions options = Options();
  options.auto_ack = false;
  Subscriber subscriber(address_, options);
  Received received;
  auto run = RunAsync(subscriber, received.Handler());
  ASSERT_TRUE(service_.WaitSubscribed());
  service_.Send({MakeDelivery(1), MakeDelivery(2), MakeDelivery(3),
                 MakeDelivery(4)});
  ASSERT_TRUE(received.Wait(4));
  // Nothing is settled by the handler returning.
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(service_.recorded().settle_messages, 0);
  std::thread other([&] {
    subscriber.Ack(received.Of("event-1"));
    subscriber.Nack(received.Of("event-2"), absl::Milliseconds(1500));
    subscriber.DeadLetter(received.Of("event-3"), "poison");
    subscriber.Ack(received.Of("event-4"));
  });
  other.join();
  ASSERT_TRUE(service_.WaitSettled(4));
  subscriber.Stop();
  EXPECT_TRUE(run.get().ok());
  const auto rec = service_.recorded();
  EXPECT_THAT(rec.acked, UnorderedElementsAreArray({1u, 4u}));
  EXPECT_THAT(rec.nacked, ElementsAre(2u));
  EXPECT_THAT(rec.nack_delays_ms, ElementsAre(1500));
  EXPECT_THAT(rec.dead_lettered, ElementsAre(3u));
  EXPECT_THAT(rec.dead_letter_reasons, ElementsAre("poison"));
}

TEST_F(ClientSubscriberTest, AcksAreBatchedIntoFewMessages) {
  SubscriberOptions options = Options();
  options.auto_ack = false;
  Subscriber subscriber(address_, options);
  Received received;
  auto run = RunAsync(subscriber, received.Handler());
  ASSERT_TRUE(service_.WaitSubscribed());
  std::vector<v1::Delivery> batch;
  for (uint64_t id = 1; id <= 1000; ++id) batch.push_back(MakeDelivery(id));
  service_.Send(std::move(batch));
  ASSERT_TRUE(received.Wait(1000));
  for (uint64_t id : received.InOrder()) subscriber.Ack(id);
  ASSERT_TRUE(service_.WaitSettled(1000));
  subscriber.Stop();
  EXPECT_TRUE(run.get().ok());
  const auto rec = service_.recorded();
  EXPECT_EQ(rec.acked.size(), 1000u);
  EXPECT_LT(rec.settle_messages, 1000) << "acks were not batched";
}

// The server's delivery ids restart at 1 on every stream, so a settlement
// the app makes late, for a delivery of an earlier Run, must not reach the
// delivery that has the same server id on the next stream.
TEST_F(ClientSubscriberTest, ASettlementFromAnEarlierRunDoesNotReachTheNextStream) {
  SubscriberOptions options = Options();
  options.auto_ack = false;
  Subscriber subscriber(address_, options);
  Received received;

  auto first_run = RunAsync(subscriber, received.Handler());
  ASSERT_TRUE(service_.WaitSubscribed());
  service_.Send({MakeDelivery(1)});
  ASSERT_TRUE(received.Wait(1));
  subscriber.Stop();
  ASSERT_TRUE(first_run.get().ok());

  // The next stream's first delivery has the same server id, 1.
  auto second_run = RunAsync(subscriber, received.Handler());
  service_.Send({MakeDelivery(1)});
  ASSERT_TRUE(received.Wait(2));
  const uint64_t stale = received.InOrder()[0];
  const uint64_t current = received.InOrder()[1];
  EXPECT_NE(stale, current);
  subscriber.Ack(stale);
  subscriber.Nack(stale);
  subscriber.DeadLetter(stale, "late");
  subscriber.Ack(current);
  ASSERT_TRUE(service_.WaitSettled(1));
  absl::SleepFor(absl::Milliseconds(200));
  subscriber.Stop();
  ASSERT_TRUE(second_run.get().ok());
  const auto rec = service_.recorded();
  EXPECT_THAT(rec.acked, ElementsAre(1u)) << "only the current delivery is acked";
  EXPECT_TRUE(rec.nacked.empty());
  EXPECT_TRUE(rec.dead_lettered.empty());
}

// Lease extension: a handler slower than the ack deadline keeps its
// delivery, extended every third of the deadline, until it returns.
TEST_F(ClientSubscriberTest, ASlowHandlersDeliveryIsExtendedUntilItIsAcked) {
  SubscriberOptions options = Options();
  options.ack_deadline = absl::Seconds(1);
  Subscriber subscriber(address_, options);
  auto run = RunAsync(subscriber, [](const v1::Delivery& d) {
    if (d.delivery_id() == 1) absl::SleepFor(absl::Milliseconds(1500));
    return absl::OkStatus();
  });
  ASSERT_TRUE(service_.WaitSubscribed());
  service_.Send({MakeDelivery(1), MakeDelivery(2)});
  ASSERT_TRUE(service_.WaitSettled(2));
  subscriber.Stop();
  EXPECT_TRUE(run.get().ok());
  const auto rec = service_.recorded();
  EXPECT_EQ(rec.subscription->ack_deadline().seconds(), 1);
  EXPECT_THAT(rec.acked, ElementsAre(1u, 2u));
  // Handled for 1.5 s, extended every 333 ms from 333-667 ms after arrival:
  // at least 3 times, and only while it was not acked.
  EXPECT_GE(std::count(rec.extended.begin(), rec.extended.end(), 1u), 3)
      << ::testing::PrintToString(rec.extended);
  EXPECT_LE(std::count(rec.extended.begin(), rec.extended.end(), 1u), 5)
      << ::testing::PrintToString(rec.extended);
  for (int64_t ms : rec.extend_deadlines_ms) EXPECT_EQ(ms, 1000);
}

// After Stop, a handler still running keeps its lease until it returns and
// is acked; the queued deliveries it will never handle are not extended.
TEST_F(ClientSubscriberTest, StopKeepsExtendingTheHandlersStillRunning) {
  SubscriberOptions options = Options();
  options.ack_deadline = absl::Seconds(1);
  Subscriber subscriber(address_, options);
  std::atomic<bool> started{false};
  auto run = RunAsync(subscriber, [&](const v1::Delivery&) {
    started = true;
    absl::SleepFor(absl::Milliseconds(1500));
    return absl::OkStatus();
  });
  ASSERT_TRUE(service_.WaitSubscribed());
  service_.Send({MakeDelivery(1), MakeDelivery(2)});
  while (!started.load()) absl::SleepFor(absl::Milliseconds(1));
  subscriber.Stop();
  EXPECT_TRUE(run.get().ok());
  const auto rec = service_.recorded();
  EXPECT_THAT(rec.acked, ElementsAre(1u));
  EXPECT_GE(std::count(rec.extended.begin(), rec.extended.end(), 1u), 3)
      << ::testing::PrintToString(rec.extended);
  EXPECT_EQ(std::count(rec.extended.begin(), rec.extended.end(), 2u), 0)
      << ::testing::PrintToString(rec.extended);
}

TEST_F(ClientSubscriberTest, WithLeasesAndNoAckDeadlineTheSubscriptionAsks30s) {
  SubscriberOptions options = Options();
  options.ack_deadline = absl::ZeroDuration();
  Subscriber subscriber(address_, options);
  auto run = RunAsync(subscriber, [](const v1::Delivery&) {
    return absl::OkStatus();
  });
  ASSERT_TRUE(service_.WaitSubscribed());
  subscriber.Stop();
  EXPECT_TRUE(run.get().ok());
  EXPECT_EQ(service_.recorded().subscription->ack_deadline().seconds(), 30);
}

TEST_F(ClientSubscriberTest, LeasesEndAfterMaxLeaseExtension) {
  SubscriberOptions options = Options();
  options.ack_deadline = absl::Seconds(1);
  options.max_lease_extension = absl::Milliseconds(400);
  const auto rec = HandleOneSlowly(options, absl::Milliseconds(1500));
  // Extended only in a round 333-400 ms after it arrived, if any.
  EXPECT_LE(rec.extended.size(), 1u) << ::testing::PrintToString(rec.extended);
}

// A sidecar from before modify_ack_deadline would end the stream on one:
// the Subscriber sees that it does not list the feature and extends nothing.
TEST_F(ClientSubscriberTest, NoLeasesWithASidecarThatDoesNotAcceptThem) {
  service_.ActAsOldServer();
  SubscriberOptions options = Options();
  options.ack_deadline = absl::Seconds(1);
  const auto rec = HandleOneSlowly(options, absl::Milliseconds(800));
  EXPECT_TRUE(rec.extended.empty());
  EXPECT_THAT(rec.acked, ElementsAre(1u));
}

// An id the server answers with an AckError is no longer outstanding there;
// the Subscriber stops extending it.
TEST_F(ClientSubscriberTest, AnIdTheServerRefusesIsNoLongerExtended) {
  service_.SetBadIds({1});
  SubscriberOptions options = Options();
  options.ack_deadline = absl::Seconds(1);
  options.auto_ack = false;
  Subscriber subscriber(address_, options);
  Received received;
  auto run = RunAsync(subscriber, received.Handler());
  ASSERT_TRUE(service_.WaitSubscribed());
  service_.Send({MakeDelivery(1)});
  ASSERT_TRUE(received.Wait(1));
  // Extended once (333-667 ms), refused, then never again.
  absl::SleepFor(absl::Milliseconds(2000));
  subscriber.Stop();
  EXPECT_TRUE(run.get().ok());
  const auto rec = service_.recorded();
  EXPECT_EQ(rec.extended.size(), 1u) << ::testing::PrintToString(rec.extended);
  EXPECT_EQ(subscriber.ack_errors(), 1);
}

TEST_F(ClientSubscriberTest, NoLeasesWhenMaxLeaseExtensionIsZero) {
  SubscriberOptions options = Options();
  options.ack_deadline = absl::ZeroDuration();
  options.max_lease_extension = absl::ZeroDuration();
  const auto rec = HandleOneSlowly(options, absl::Milliseconds(800));
  EXPECT_FALSE(rec.subscription->has_ack_deadline()) << "the server's default";
  EXPECT_TRUE(rec.extended.empty());
}

TEST_F(ClientSubscriberTest, HandlersRunConcurrently) {
  SubscriberOptions options = Options();
  options.concurrency = 4;
  Subscriber subscriber(address_, options);
  std::atomic<int> running{0};
  std::atomic<int> most{0};
  auto run = RunAsync(subscriber, [&](const v1::Delivery&) {
    const int now = ++running;
    int seen = most.load();
    while (now > seen && !most.compare_exchange_weak(seen, now)) {
    }
    absl::SleepFor(absl::Milliseconds(100));
    --running;
    return absl::OkStatus();
  });
  ASSERT_TRUE(service_.WaitSubscribed());
  std::vector<v1::Delivery> batch;
  for (uint64_t id = 1; id <= 8; ++id) batch.push_back(MakeDelivery(id));
  const absl::Time start = absl::Now();
  service_.Send(std::move(batch));
  ASSERT_TRUE(service_.WaitSettled(8));
  const absl::Duration took = absl::Now() - start;
  subscriber.Stop();
  EXPECT_TRUE(run.get().ok());
  EXPECT_EQ(most.load(), 4);
  EXPECT_LT(took, absl::Milliseconds(800)) << "8 x 100 ms handlers ran serially";
  EXPECT_EQ(service_.recorded().acked.size(), 8u);
}

TEST_F(ClientSubscriberTest, StopLetsInFlightHandlersFinishAndAcksThem) {
  SubscriberOptions options = Options();
  options.concurrency = 2;
  Subscriber subscriber(address_, options);
  std::atomic<int> started{0};
  auto run = RunAsync(subscriber, [&](const v1::Delivery&) {
    ++started;
    absl::SleepFor(absl::Milliseconds(300));
    return absl::OkStatus();
  });
  ASSERT_TRUE(service_.WaitSubscribed());
  std::vector<v1::Delivery> batch;
  for (uint64_t id = 1; id <= 10; ++id) batch.push_back(MakeDelivery(id));
  service_.Send(std::move(batch));
  while (started.load() < 2) absl::SleepFor(absl::Milliseconds(5));
  subscriber.Stop();
  EXPECT_TRUE(run.get().ok());
  const auto rec = service_.recorded();
  // The two handlers that were running finished and were acked before the
  // half-close; the queued deliveries were never handled nor settled.
  EXPECT_EQ(started.load(), 2);
  EXPECT_EQ(rec.acked.size(), 2u);
  EXPECT_TRUE(rec.nacked.empty());
  EXPECT_TRUE(rec.half_closed);
}

TEST_F(ClientSubscriberTest, StopFromInsideAHandler) {
  Subscriber subscriber(address_, Options());
  int handled = 0;
  auto run = RunAsync(subscriber, [&](const v1::Delivery&) {
    if (++handled == 3) subscriber.Stop();
    return absl::OkStatus();
  });
  ASSERT_TRUE(service_.WaitSubscribed());
  std::vector<v1::Delivery> batch;
  for (uint64_t id = 1; id <= 6; ++id) batch.push_back(MakeDelivery(id));
  service_.Send(std::move(batch));
  EXPECT_TRUE(run.get().ok());
  EXPECT_EQ(handled, 3);
  EXPECT_THAT(service_.recorded().acked, ElementsAre(1u, 2u, 3u));
}

TEST_F(ClientSubscriberTest, StopBeforeRunEndsRunAtOnce) {
  Subscriber subscriber(address_, Options());
  subscriber.Stop();
  absl::Status status = subscriber.Run([](const v1::Delivery&) {
    return absl::OkStatus();
  });
  EXPECT_TRUE(status.ok()) << status;
}

TEST_F(ClientSubscriberTest, AckErrorsAreCountedNotFatal) {
  service_.SetBadIds({2});
  Subscriber subscriber(address_, Options());
  auto run = RunAsync(subscriber, [](const v1::Delivery&) {
    return absl::OkStatus();
  });
  ASSERT_TRUE(service_.WaitSubscribed());
  service_.Send({MakeDelivery(1), MakeDelivery(2)});
  ASSERT_TRUE(service_.WaitSettled(2));
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (subscriber.ack_errors() < 1 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(subscriber.ack_errors(), 1);
  // The stream goes on.
  service_.Send({MakeDelivery(3)});
  ASSERT_TRUE(service_.WaitSettled(3));
  subscriber.Stop();
  EXPECT_TRUE(run.get().ok());
}

TEST_F(ClientSubscriberTest, RunReturnsTheStreamsError) {
  Subscriber subscriber(address_, Options());
  auto run = RunAsync(subscriber, [](const v1::Delivery&) {
    return absl::OkStatus();
  });
  ASSERT_TRUE(service_.WaitSubscribed());
  service_.EndStream(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                  "subscription.group: a consumer group is required"));
  absl::Status status = run.get();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "subscription.group: a consumer group is required");
}

TEST(ClientSubscriberNoServerTest, RunReturnsUnavailable) {
  int port = 0;
  {
    v1::EventBus::CallbackService unimplemented;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&unimplemented);
    std::unique_ptr<grpc::Server> s = builder.BuildAndStart();
    ASSERT_NE(s, nullptr);
    s->Shutdown();
  }
  SubscriberOptions options;
  options.topics = {"t"};
  options.group = "g";
  Subscriber subscriber(absl::StrCat("127.0.0.1:", port), options);
  absl::Status status = subscriber.Run([](const v1::Delivery&) {
    return absl::OkStatus();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
}

}  // namespace
}  // namespace eventbus::client
