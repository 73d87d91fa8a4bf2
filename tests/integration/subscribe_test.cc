// Subscribe against the real local Kafka, through an in-process sidecar.
// Events are written with a plain librdkafka producer (or through the
// sidecar), and every check looks at what a user would: the deliveries, the
// offsets the group committed in Kafka, the records on the dead-letter topic,
// the status codes and their messages.

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "server/event_codec.h"
#include "tests/integration/sidecar_fixture.h"

namespace eventbus::testing {
namespace {

using google::protobuf::util::MessageDifferencer;
using Position = std::pair<int32_t, int64_t>;  // partition, offset

google::protobuf::Duration ToProto(absl::Duration d) {
  google::protobuf::Duration out;
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  out.set_seconds(ns / 1000000000);
  out.set_nanos(static_cast<int32_t>(ns % 1000000000));
  return out;
}

std::string Lower(const std::string& s) { return absl::AsciiStrToLower(s); }

// A subscription of `group` to `topic` from the earliest event.
v1::Subscription MakeSubscription(const std::string& topic,
                                  const std::string& group) {
  v1::Subscription s;
  s.add_topics(topic);
  s.set_group(group);
  s.set_start_position(v1::START_POSITION_EARLIEST);
  return s;
}

v1::SubscribeRequest AsRequest(const v1::Subscription& s) {
  v1::SubscribeRequest r;
  *r.mutable_subscription() = s;
  return r;
}

std::vector<uint64_t> Ids(const std::vector<v1::Delivery>& ds) {
  std::vector<uint64_t> ids;
  for (const v1::Delivery& d : ds) ids.push_back(d.delivery_id());
  return ids;
}

// One event written by ProduceEvents, and where Kafka stored it.
struct Produced {
  std::string id;
  std::optional<std::string> key;
  std::string data;
  int32_t partition = -1;
  int64_t offset = -1;
};

// Writes `count` CloudEvents to `topic` in binary mode, exactly as the
// sidecar would, with a plain librdkafka producer. Event i has id
// "<prefix>-<i>", key "key-<i % keys>" (none when keys == 0) and data "i"
// padded with '.' to `data_bytes`.
std::vector<Produced> ProduceEvents(const std::string& topic, int count,
                                    int keys, size_t data_bytes = 0,
                                    const std::string& prefix = "ev") {
  std::vector<kafka::Record> records;
  std::vector<Produced> out;
  for (int i = 0; i < count; ++i) {
    v1::PublishRequest req;
    req.set_topic(topic);
    if (keys > 0) req.set_key(absl::StrCat("key-", i % keys));
    v1::Event* e = req.mutable_event();
    e->set_id(absl::StrCat(prefix, "-", i));
    e->set_type("com.example.subscribe");
    e->set_source("//tests/subscribe");
    std::string data = absl::StrCat(i);
    if (data.size() < data_bytes) data.resize(data_bytes, '.');
    e->set_data(data);
    absl::Status s = server::PrepareRequest(req, "//eventbus/test", absl::Now());
    EXPECT_TRUE(s.ok()) << s;
    absl::StatusOr<kafka::Record> r =
        server::EncodeRecord(req, server::ContentMode::kBinary, int64_t{1} << 30);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return out;
    records.push_back(*std::move(r));
    out.push_back({e->id(), keys > 0 ? std::optional(req.key()) : std::nullopt,
                   data});
  }
  std::vector<kafka::DeliveryResult> results = ProduceRecords(records);
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_TRUE(results[i].status.ok() && results[i].offset >= 0)
        << "producing " << out[i].id << ": " << results[i].status
        << " offset " << results[i].offset;
    out[i].partition = results[i].partition;
    out[i].offset = results[i].offset;
  }
  return out;
}

std::map<std::string, Produced> ById(const std::vector<Produced>& events) {
  std::map<std::string, Produced> m;
  for (const Produced& p : events) m[p.id] = p;
  return m;
}

// Polls the offsets `group` committed on `topic` until they equal `want`
// (commits are asynchronous: auto-commit runs about every second). Returns
// the last offsets read. A partition with nothing to commit (want 0) may
// have no committed offset at all: it reads as 0 here.
std::map<int32_t, int64_t> WaitCommitted(
    const std::string& group, const std::string& topic,
    const std::map<int32_t, int64_t>& want,
    absl::Duration timeout = absl::Seconds(15)) {
  const absl::Time deadline = absl::Now() + timeout;
  std::map<int32_t, int64_t> got;
  do {
    got = CommittedOffsets(group, topic);
    for (auto& [p, offset] : got) {
      auto it = want.find(p);
      if (offset == RD_KAFKA_OFFSET_INVALID && it != want.end() && it->second == 0) {
        offset = 0;
      }
    }
    if (got == want) break;
    absl::SleepFor(absl::Milliseconds(250));
  } while (absl::Now() < deadline);
  return got;
}

// A Subscribe stream as a client sees it: it sends the first messages, a
// reader thread collects deliveries and ack errors, and the test takes
// deliveries and acks, nacks or dead-letters them. Checks on every response
// that delivery ids start at 1 and rise.
class SubscribeClient {
 public:
  struct Received {
    v1::Delivery delivery;
    absl::Time at;
  };
  struct Options {
    // Ack every delivery as soon as it arrives (from the reader thread).
    bool auto_ack = false;
    // The call's deadline; none by default.
    absl::Duration deadline = absl::InfiniteDuration();
  };

  SubscribeClient(v1::EventBus::Stub* stub, const v1::Subscription& sub)
      : SubscribeClient(stub, {AsRequest(sub)}, Options{}) {}
  SubscribeClient(v1::EventBus::Stub* stub, const v1::Subscription& sub,
                  Options options)
      : SubscribeClient(stub, {AsRequest(sub)}, options) {}
  // Sends `first` as the stream's first messages, whatever they are.
  SubscribeClient(v1::EventBus::Stub* stub,
                  const std::vector<v1::SubscribeRequest>& first,
                  Options options)
      : auto_ack_(options.auto_ack) {
    if (options.deadline != absl::InfiniteDuration()) {
      ctx_.set_deadline(absl::ToChronoTime(absl::Now() + options.deadline));
    }
    stream_ = stub->Subscribe(&ctx_);
    for (const v1::SubscribeRequest& r : first) Send(r);
    reader_ = std::thread([this] { ReadLoop(); });
  }

  SubscribeClient(const SubscribeClient&) = delete;
  SubscribeClient& operator=(const SubscribeClient&) = delete;

  ~SubscribeClient() {
    if (reader_.joinable()) {
      ctx_.TryCancel();
      reader_.join();
    }
  }

  bool Send(const v1::SubscribeRequest& req) {
    absl::MutexLock l(&write_mu_);
    if (finished_ || writes_done_) return false;
    return stream_->Write(req);
  }
  bool Ack(const std::vector<uint64_t>& ids) {
    v1::SubscribeRequest r;
    for (uint64_t id : ids) r.mutable_ack()->add_delivery_ids(id);
    return Send(r);
  }
  bool Nack(const std::vector<uint64_t>& ids,
            std::optional<absl::Duration> retry_delay = std::nullopt) {
    v1::SubscribeRequest r;
    for (uint64_t id : ids) r.mutable_nack()->add_delivery_ids(id);
    if (retry_delay) *r.mutable_nack()->mutable_retry_delay() = ToProto(*retry_delay);
    return Send(r);
  }
  bool ModifyAckDeadline(const std::vector<uint64_t>& ids, absl::Duration deadline) {
    v1::SubscribeRequest r;
    for (uint64_t id : ids) r.mutable_modify_ack_deadline()->add_delivery_ids(id);
    *r.mutable_modify_ack_deadline()->mutable_ack_deadline() = ToProto(deadline);
    return Send(r);
  }
  bool DeadLetter(const std::vector<uint64_t>& ids, const std::string& reason) {
    v1::SubscribeRequest r;
    for (uint64_t id : ids) r.mutable_dead_letter()->add_delivery_ids(id);
    r.mutable_dead_letter()->set_reason(reason);
    return Send(r);
  }

  // Waits until at least `n` deliveries are waiting to be taken (or the
  // stream ended, or `timeout`), then takes every waiting delivery.
  std::vector<v1::Delivery> Take(size_t n = 0,
                                 absl::Duration timeout = absl::ZeroDuration()) {
    absl::MutexLock l(&mu_);
    auto ready = [&]() { return pending_.size() >= n || ended_; };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    std::vector<v1::Delivery> out(pending_.begin(), pending_.end());
    pending_.clear();
    return out;
  }

  // Waits until `total` deliveries arrived since the start; false on timeout.
  bool WaitReceived(size_t total, absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    auto ready = [&]() { return history_.size() >= total; };
    return mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  }

  // Waits until `n` ack errors arrived; false on timeout.
  bool WaitAckErrors(size_t n, absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    auto ready = [&]() { return ack_errors_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  }

  // Waits until the server ended the stream; its status, or nullopt.
  std::optional<grpc::Status> WaitEnded(absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    auto ready = [&]() { return ended_; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) {
      return std::nullopt;
    }
    return status_;
  }

  // Half-closes (WritesDone) and waits for the server to end the stream.
  grpc::Status Close(absl::Duration timeout = absl::Seconds(20)) {
    {
      absl::MutexLock l(&write_mu_);
      if (!finished_ && !writes_done_) stream_->WritesDone();
      writes_done_ = true;
    }
    if (!WaitEnded(timeout)) {
      ADD_FAILURE() << "the server did not end the stream within " << timeout
                    << " of WritesDone";
      ctx_.TryCancel();
    }
    reader_.join();
    return status_;
  }

  // Cancels the call (ClientContext::TryCancel), as a client that dies does.
  grpc::Status Cancel() {
    ctx_.TryCancel();
    reader_.join();
    return status_;
  }

  size_t received() const {
    absl::MutexLock l(&mu_);
    return history_.size();
  }
  std::vector<Received> history() const {
    absl::MutexLock l(&mu_);
    return history_;
  }
  std::vector<v1::AckError> ack_errors() const {
    absl::MutexLock l(&mu_);
    return ack_errors_;
  }
  // Event ids delivered so far.
  std::set<std::string> event_ids() const {
    absl::MutexLock l(&mu_);
    return event_ids_;
  }

 private:
  void ReadLoop() {
    v1::SubscribeResponse resp;
    while (stream_->Read(&resp)) {
      std::vector<uint64_t> to_ack;
      {
        absl::MutexLock l(&mu_);
        const absl::Time now = absl::Now();
        for (const v1::Delivery& d : resp.deliveries()) {
          if (last_id_ == 0) {
            EXPECT_EQ(d.delivery_id(), 1u) << "the first delivery id";
          }
          EXPECT_GT(d.delivery_id(), last_id_) << "delivery ids must rise";
          last_id_ = d.delivery_id();
          history_.push_back({d, now});
          pending_.push_back(d);
          event_ids_.insert(d.event().id());
          if (auto_ack_) to_ack.push_back(d.delivery_id());
        }
        for (const v1::AckError& e : resp.ack_errors()) ack_errors_.push_back(e);
      }
      if (!to_ack.empty()) Ack(to_ack);
    }
    absl::MutexLock wl(&write_mu_);
    grpc::Status status = stream_->Finish();
    finished_ = true;
    absl::MutexLock l(&mu_);
    status_ = status;
    ended_ = true;
  }

  const bool auto_ack_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::SubscribeRequest, v1::SubscribeResponse>>
      stream_;
  std::thread reader_;

  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  bool finished_ ABSL_GUARDED_BY(write_mu_) = false;
  bool writes_done_ ABSL_GUARDED_BY(write_mu_) = false;

  mutable absl::Mutex mu_;
  uint64_t last_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Received> history_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::Delivery> pending_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::AckError> ack_errors_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> event_ids_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_;  // written once, before ended_ is set
};

std::string Describe(const std::vector<v1::AckError>& errors) {
  std::string s;
  for (const v1::AckError& e : errors) {
    absl::StrAppend(&s, "{id ", e.delivery_id(), ": ", e.status().code(), " ",
                    e.status().message(), "} ");
  }
  return s;
}

// Every delivery's fields against the event written there.
void ExpectMatches(const v1::Delivery& d, const std::string& topic,
                   const std::map<std::string, Produced>& by_id) {
  auto it = by_id.find(d.event().id());
  ASSERT_NE(it, by_id.end()) << "unknown event " << d.ShortDebugString();
  const Produced& p = it->second;
  EXPECT_EQ(d.topic(), topic);
  EXPECT_EQ(d.partition(), p.partition) << p.id;
  EXPECT_EQ(d.offset(), p.offset) << p.id;
  EXPECT_EQ(d.key(), p.key.value_or("")) << p.id;
  EXPECT_EQ(d.event().data(), p.data) << p.id;
  EXPECT_FALSE(d.raw()) << p.id;
  EXPECT_GE(d.attempt(), 1) << p.id;
}

class SubscribeTest : public SidecarFixture {
 protected:
  // Members learn of a rebalance on their next heartbeat (3 s by default);
  // tests that add and remove members use a shorter one to run faster.
  void StartSidecarWithFastHeartbeat() {
    StartSidecar([](server::Config& c) {
      c.consumer_properties["heartbeat.interval.ms"] = "500";
    });
  }

  // A new 1-partition topic holding one event, the sidecar started, and a
  // stream of group_ subscribed to it with a 1 s ack deadline.
  std::unique_ptr<SubscribeClient> SubscribeToOneEvent(const std::string& topic) {
    CreateTopic(topic, 1);
    ProduceEvents(topic, 1, 1);
    StartSidecar();
    v1::Subscription sub = MakeSubscription(topic, group_);
    *sub.mutable_ack_deadline() = ToProto(absl::Seconds(1));
    return std::make_unique<SubscribeClient>(stub_.get(), sub);
  }

  std::string group_ = UniqueTopic("group");
};

// 1.
TEST_F(SubscribeTest, TwoMembersReceiveEveryEventAndCommitToTheHighWatermark) {
  const std::string topic = UniqueTopic("sub-two-members");
  CreateTopic(topic, 6);
  constexpr int kEvents = 10000;
  const std::vector<Produced> events = ProduceEvents(topic, kEvents, 100);
  const std::map<std::string, Produced> by_id = ById(events);
  ASSERT_EQ(by_id.size(), static_cast<size_t>(kEvents));
  StartSidecar();

  SubscribeClient a(stub_.get(), MakeSubscription(topic, group_), {.auto_ack = true});
  SubscribeClient b(stub_.get(), MakeSubscription(topic, group_), {.auto_ack = true});
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  std::set<std::string> all;
  while (absl::Now() < deadline) {
    all = a.event_ids();
    const std::set<std::string> from_b = b.event_ids();
    all.insert(from_b.begin(), from_b.end());
    if (all.size() >= by_id.size()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(all.size(), by_id.size()) << "events delivered of " << kEvents;

  const std::map<int32_t, int64_t> high = HighWatermarks(topic);
  EXPECT_EQ(WaitCommitted(group_, topic, high), high);
  for (SubscribeClient* c : {&a, &b}) {
    for (const SubscribeClient::Received& r : c->history()) {
      ExpectMatches(r.delivery, topic, by_id);
      if (::testing::Test::HasFailure()) break;
    }
    for (const v1::AckError& e : c->ack_errors()) {
      // Acks racing a rebalance may be stale; nothing else may fail.
      EXPECT_EQ(e.status().code(), grpc::StatusCode::FAILED_PRECONDITION)
          << Describe({e});
    }
  }
  std::cerr << "two members: a received " << a.received() << ", b received "
            << b.received() << " of " << kEvents << "\n";
  grpc::Status sa = a.Close();
  grpc::Status sb = b.Close();
  EXPECT_TRUE(sa.ok()) << sa.error_code() << " " << sa.error_message();
  EXPECT_TRUE(sb.ok()) << sb.error_code() << " " << sb.error_message();
}

// 1b. A backlog hundreds of times the read-ahead: librdkafka's fetch queue
// fills and runs dry again and again (each time it stops fetching, and looks
// again after fetch.queue.backoff.ms, which the consumer sets to 10 ms; with
// librdkafka's default of a second this takes ~27 s). Every event arrives, in
// offset order per partition, and the group commits to the high watermarks.
// (The one-minute bound is only liveness; the test prints how long it took.)
TEST_F(SubscribeTest, BacklogFarLargerThanTheReadAheadArrivesWhole) {
  const std::string topic = UniqueTopic("sub-read-ahead");
  CreateTopic(topic, 3);
  constexpr int kEvents = 6000;
  const std::vector<Produced> events = ProduceEvents(topic, kEvents, 50, 4096);
  const std::map<std::string, Produced> by_id = ById(events);
  ASSERT_EQ(by_id.size(), static_cast<size_t>(kEvents));
  StartSidecar([](server::Config& c) {
    c.subscribe_read_ahead_bytes = 64 << 10;
    // Small fetches, so that the 24 MB come in ~400 refills of the queue.
    c.consumer_properties["max.partition.fetch.bytes"] = "65536";
    c.consumer_properties["fetch.max.bytes"] = "65536";
    c.consumer_properties["message.max.bytes"] = "65536";
  });

  const absl::Time start = absl::Now();
  SubscribeClient client(stub_.get(), MakeSubscription(topic, group_),
                         {.auto_ack = true});
  EXPECT_TRUE(client.WaitReceived(kEvents, absl::Seconds(60)))
      << client.received() << " of " << kEvents << " events in a minute";
  std::cerr << "read-ahead refills: " << kEvents << " events of 4 KiB in "
            << absl::FormatDuration(absl::Now() - start) << "\n";
  EXPECT_EQ(client.event_ids().size(), static_cast<size_t>(kEvents));
  std::map<int32_t, int64_t> last;  // partition -> last offset delivered
  for (const SubscribeClient::Received& r : client.history()) {
    ExpectMatches(r.delivery, topic, by_id);
    auto [it, first] = last.try_emplace(r.delivery.partition(), r.delivery.offset());
    if (!first) {
      EXPECT_GT(r.delivery.offset(), it->second)
          << "partition " << r.delivery.partition() << " out of order";
      it->second = r.delivery.offset();
    }
    if (::testing::Test::HasFailure()) break;
  }
  const std::map<int32_t, int64_t> high = HighWatermarks(topic);
  EXPECT_EQ(WaitCommitted(group_, topic, high), high);
  EXPECT_TRUE(client.ack_errors().empty()) << Describe(client.ack_errors());
  grpc::Status status = client.Close();
  EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
}

// 2.
TEST_F(SubscribeTest, CancelledMemberHandsItsUnackedDeliveriesToAnother) {
  const std::string topic = UniqueTopic("sub-cancel");
  CreateTopic(topic, 3);
  constexpr int kEvents = 300;
  const std::vector<Produced> events = ProduceEvents(topic, kEvents, 30);
  StartSidecarWithFastHeartbeat();

  auto a = std::make_unique<SubscribeClient>(stub_.get(),
                                             MakeSubscription(topic, group_));
  ASSERT_TRUE(a->WaitReceived(kEvents, absl::Seconds(30)))
      << "a received " << a->received() << " of " << kEvents;
  std::vector<v1::Delivery> held = a->Take();
  std::mt19937 rng(7);
  std::shuffle(held.begin(), held.end(), rng);
  std::vector<v1::Delivery> acked_by_a(held.begin(), held.begin() + kEvents / 2);
  ASSERT_TRUE(a->Ack(Ids(acked_by_a)));
  // Until the acks are applied, a commit could not include them anyway; give
  // the server a moment so that the test exercises committed acks too.
  absl::SleepFor(absl::Milliseconds(500));

  SubscribeClient b(stub_.get(), MakeSubscription(topic, group_), {.auto_ack = true});
  EXPECT_TRUE(b.WaitReceived(1, absl::Seconds(20)))
      << "b never got a partition while a held all of them";
  grpc::Status cancelled = a->Cancel();
  EXPECT_EQ(cancelled.error_code(), grpc::StatusCode::CANCELLED);

  std::set<std::string> acked;
  const std::vector<v1::AckError> a_errors = a->ack_errors();
  std::set<uint64_t> failed;
  for (const v1::AckError& e : a_errors) {
    EXPECT_EQ(e.status().code(), grpc::StatusCode::FAILED_PRECONDITION)
        << Describe({e});
    failed.insert(e.delivery_id());
  }
  for (const v1::Delivery& d : acked_by_a) {
    if (!failed.contains(d.delivery_id())) acked.insert(d.event().id());
  }
  // Every event a did not ack reaches b, which acks everything.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  std::set<std::string> all;
  while (absl::Now() < deadline) {
    all = acked;
    const std::set<std::string> from_b = b.event_ids();
    all.insert(from_b.begin(), from_b.end());
    if (all.size() >= static_cast<size_t>(kEvents)) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  const std::set<std::string> from_b = b.event_ids();
  for (const Produced& p : events) {
    if (!acked.contains(p.id)) {
      EXPECT_TRUE(from_b.contains(p.id))
          << p.id << " (partition " << p.partition << " offset " << p.offset
          << ") was held unacked by the cancelled member and never reached b";
    }
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kEvents));
  const std::map<int32_t, int64_t> high = HighWatermarks(topic);
  EXPECT_EQ(WaitCommitted(group_, topic, high), high);
  std::cerr << "cancel: a acked " << acked.size() << ", b received "
            << b.received() << "\n";
  grpc::Status sb = b.Close();
  EXPECT_TRUE(sb.ok()) << sb.error_code() << " " << sb.error_message();
}

// 3.
TEST_F(SubscribeTest, RandomOrderAcksNeverCommitPastTheSmallestUnackedOffset) {
  const std::string topic = UniqueTopic("sub-random-acks");
  CreateTopic(topic, 3);
  // The rule itself, over random sequences of acks, is
  // DeliveryLedgerTest's; this proves the driver stores and commits what
  // the ledger allows.
  constexpr int kEvents = 60;
  ProduceEvents(topic, kEvents, 30);
  const std::map<int32_t, int64_t> high = HighWatermarks(topic);
  StartSidecar();

  SubscribeClient c(stub_.get(), MakeSubscription(topic, group_));
  ASSERT_TRUE(c.WaitReceived(kEvents, absl::Seconds(30)))
      << "received " << c.received() << " of " << kEvents;
  std::vector<v1::Delivery> all = c.Take();
  ASSERT_EQ(all.size(), static_cast<size_t>(kEvents));

  // Unacked offsets per partition, as the client knows them.
  std::map<int32_t, std::set<int64_t>> unacked;
  for (const v1::Delivery& d : all) unacked[d.partition()].insert(d.offset());
  // Phase 1 acks everything except the middle offset of each partition (the
  // "hole"); phase 2 acks the rest. Both in random order.
  std::map<int32_t, int64_t> hole;
  std::vector<v1::Delivery> phase1, phase2;
  for (const auto& [p, offsets] : unacked) {
    hole[p] = *std::next(offsets.begin(), static_cast<long>(offsets.size() / 2));
  }
  for (const v1::Delivery& d : all) {
    (d.offset() == hole[d.partition()] ? phase2 : phase1).push_back(d);
  }
  std::mt19937 rng(11);
  std::shuffle(phase1.begin(), phase1.end(), rng);

  auto check = [&](const char* when) {
    const std::map<int32_t, int64_t> committed = CommittedOffsets(group_, topic);
    for (const auto& [p, offset] : committed) {
      if (offset == RD_KAFKA_OFFSET_INVALID) continue;
      const int64_t limit =
          unacked[p].empty() ? high.at(p) : *unacked[p].begin();
      EXPECT_LE(offset, limit) << when << ": partition " << p
                               << " committed past the unacked offset " << limit;
    }
  };
  auto ack_in_batches = [&](const std::vector<v1::Delivery>& ds, size_t batch) {
    for (size_t i = 0; i < ds.size(); i += batch) {
      std::vector<v1::Delivery> part(ds.begin() + static_cast<long>(i),
                                     ds.begin() + static_cast<long>(std::min(ds.size(), i + batch)));
      // Only after the check may the client count them as acked: the server
      // may commit them any time after it receives the ack.
      check("before an ack batch");
      ASSERT_TRUE(c.Ack(Ids(part)));
      for (const v1::Delivery& d : part) unacked[d.partition()].erase(d.offset());
      absl::SleepFor(absl::Milliseconds(150));
    }
  };
  ack_in_batches(phase1, 15);
  // The running consumer commits on its own: up to each partition's hole.
  EXPECT_EQ(WaitCommitted(group_, topic, hole), hole)
      << "commits while running must reach, and not pass, the unacked offset";
  check("after phase 1");
  ack_in_batches(phase2, 1);
  EXPECT_EQ(WaitCommitted(group_, topic, high), high);
  EXPECT_TRUE(c.ack_errors().empty()) << Describe(c.ack_errors());
  grpc::Status s = c.Close();
  EXPECT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
}

// 4.
TEST_F(SubscribeTest, MembersJoiningAndLeavingLoseNothingAndRedeliverOnlyUnacked) {
  const std::string topic = UniqueTopic("sub-churn");
  CreateTopic(topic, 6);
  constexpr int kEvents = 6000;
  const std::vector<Produced> events = ProduceEvents(topic, kEvents, 60);
  const std::map<int32_t, int64_t> high = HighWatermarks(topic);
  StartSidecarWithFastHeartbeat();

  v1::Subscription sub = MakeSubscription(topic, group_);
  sub.set_max_outstanding_messages(20);
  struct Member {
    std::string name;
    std::unique_ptr<SubscribeClient> client;
    bool active = true;
    std::vector<v1::Delivery> unacked;  // taken, in delivery order
    std::set<uint64_t> ack_sent;
  };
  std::vector<Member> members;
  members.push_back({"a", std::make_unique<SubscribeClient>(stub_.get(), sub)});
  members.push_back({"b", std::make_unique<SubscribeClient>(stub_.get(), sub)});
  std::set<std::string> ack_sent_events;
  int phase = 0;  // 0: a+b; 1: c joined, acking slowly until c gets some;
                  // 2: a+b+c at full speed; 3: a left.
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  absl::Time next_commit_check = absl::Now();
  bool done = false;
  while (!done && absl::Now() < deadline) {
    for (Member& m : members) {
      if (!m.active) continue;
      for (v1::Delivery& d : m.client->Take()) m.unacked.push_back(std::move(d));
      // Acks go out in delivery order, so what a member acked is always a
      // prefix per partition: every ack it got through is committable.
      const size_t n = std::min<size_t>(m.unacked.size(), phase == 1 ? 1 : 10);
      if (n == 0) continue;
      std::vector<v1::Delivery> batch(m.unacked.begin(), m.unacked.begin() + static_cast<long>(n));
      m.unacked.erase(m.unacked.begin(), m.unacked.begin() + static_cast<long>(n));
      m.client->Ack(Ids(batch));
      for (const v1::Delivery& d : batch) {
        m.ack_sent.insert(d.delivery_id());
        ack_sent_events.insert(d.event().id());
      }
    }
    if (phase == 0 && ack_sent_events.size() >= kEvents / 4) {
      members.push_back({"c", std::make_unique<SubscribeClient>(stub_.get(), sub)});
      phase = 1;
    } else if (phase == 1 && members[2].client->received() > 0) {
      phase = 2;
    } else if (phase == 2 && ack_sent_events.size() >= kEvents * 6 / 10) {
      grpc::Status s = members[0].client->Close();
      EXPECT_TRUE(s.ok()) << "a leaving: " << s.error_code() << " " << s.error_message();
      members[0].active = false;
      phase = 3;
    }
    if (phase == 3 && ack_sent_events.size() == kEvents &&
        absl::Now() >= next_commit_check) {
      // Done once the group committed everything: only acked offsets are
      // committed, so then every event was acked by some member.
      done = WaitCommitted(group_, topic, high, absl::ZeroDuration()) == high;
      next_commit_check = absl::Now() + absl::Milliseconds(500);
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(phase, 3) << "the churn did not get through its phases";
  EXPECT_TRUE(done) << "acks sent for " << ack_sent_events.size() << " of "
                    << kEvents << " events; committed "
                    << ::testing::PrintToString(CommittedOffsets(group_, topic))
                    << " vs high watermarks " << ::testing::PrintToString(high);
  for (size_t i = 1; i < members.size(); ++i) {
    grpc::Status s = members[i].client->Close();
    EXPECT_TRUE(s.ok()) << members[i].name << ": " << s.error_code() << " "
                        << s.error_message();
  }

  // Every delivery of every record, in time order, with whether its ack got
  // through (sent, and no AckError came back).
  struct Seen {
    absl::Time at;
    std::string member;
    uint64_t id;
    bool acked;
  };
  std::map<Position, std::vector<Seen>> by_position;
  for (const Member& m : members) {
    std::set<uint64_t> failed;
    for (const v1::AckError& e : m.client->ack_errors()) {
      EXPECT_EQ(e.status().code(), grpc::StatusCode::FAILED_PRECONDITION)
          << m.name << ": " << Describe({e});
      failed.insert(e.delivery_id());
    }
    for (const SubscribeClient::Received& r : m.client->history()) {
      const uint64_t id = r.delivery.delivery_id();
      by_position[{r.delivery.partition(), r.delivery.offset()}].push_back(
          {r.at, m.name, id, m.ack_sent.contains(id) && !failed.contains(id)});
    }
  }
  size_t redelivered = 0;
  for (const Produced& p : events) {
    auto it = by_position.find({p.partition, p.offset});
    if (it == by_position.end()) {
      ADD_FAILURE() << p.id << " at " << p.partition << "/" << p.offset
                    << " was never delivered";
      continue;
    }
    std::vector<Seen>& seen = it->second;
    std::sort(seen.begin(), seen.end(),
              [](const Seen& x, const Seen& y) { return x.at < y.at; });
    const auto acks = std::count_if(seen.begin(), seen.end(),
                                    [](const Seen& s) { return s.acked; });
    std::string trail;
    for (const Seen& s : seen) {
      absl::StrAppend(&trail, s.member, "#", s.id, s.acked ? " acked" : " unacked", "; ");
    }
    EXPECT_EQ(acks, 1) << p.id << " at " << p.partition << "/" << p.offset
                       << ": acked " << acks << " times: " << trail;
    if (seen.size() > 1) {
      ++redelivered;
      for (size_t i = 0; i + 1 < seen.size(); ++i) {
        EXPECT_FALSE(seen[i].acked)
            << p.id << " at " << p.partition << "/" << p.offset
            << " was delivered again after an ack got through: " << trail;
      }
    }
    if (::testing::Test::HasFailure() && redelivered > 20) break;
  }
  std::cerr << "churn: received a=" << members[0].client->received()
            << " b=" << members[1].client->received() << " c="
            << (members.size() > 2 ? members[2].client->received() : 0)
            << ", redelivered " << redelivered << "\n";
}

// 5.
TEST_F(SubscribeTest, NackRedeliversWithRisingAttemptsThenDeadLetters) {
  const std::string topic = UniqueTopic("sub-nack");
  const std::string dlq = topic + ".dlq";
  CreateTopic(topic, 1);
  CreateTopic(dlq, 1);
  const std::vector<Produced> events = ProduceEvents(topic, 3, 1);
  const std::vector<ConsumedRecord> source = ReadTopic(topic);
  ASSERT_EQ(source.size(), 3u);
  StartSidecar();

  v1::Subscription sub = MakeSubscription(topic, group_);
  sub.set_max_delivery_attempts(3);
  SubscribeClient c(stub_.get(), sub);
  std::vector<v1::Delivery> first = c.Take(3, absl::Seconds(30));
  ASSERT_EQ(first.size(), 3u);
  for (const v1::Delivery& d : first) EXPECT_EQ(d.attempt(), 1);
  ASSERT_EQ(first[0].offset(), 0);
  ASSERT_TRUE(c.Ack({first[1].delivery_id(), first[2].delivery_id()}));

  // Attempt 1, nacked with an explicit delay.
  absl::Time nacked_at = absl::Now();
  ASSERT_TRUE(c.Nack({first[0].delivery_id()}, absl::Milliseconds(300)));
  std::vector<v1::Delivery> second = c.Take(1, absl::Seconds(10));
  ASSERT_EQ(second.size(), 1u) << "no redelivery after a nack";
  EXPECT_GE(absl::Now() - nacked_at, absl::Milliseconds(250))
      << "redelivered before the nack's retry_delay";
  EXPECT_EQ(second[0].attempt(), 2);
  EXPECT_GT(second[0].delivery_id(), first[2].delivery_id());
  EXPECT_EQ(second[0].offset(), 0);
  EXPECT_EQ(second[0].partition(), first[0].partition());
  EXPECT_TRUE(MessageDifferencer::Equals(second[0].event(), first[0].event()));

  // Attempt 2, nacked without a delay: the server's backoff (1 s, doubled
  // per attempt).
  nacked_at = absl::Now();
  ASSERT_TRUE(c.Nack({second[0].delivery_id()}));
  std::vector<v1::Delivery> third = c.Take(1, absl::Seconds(10));
  ASSERT_EQ(third.size(), 1u) << "no redelivery after the second nack";
  const absl::Duration backoff = absl::Now() - nacked_at;
  EXPECT_GE(backoff, absl::Milliseconds(900)) << "subscribe.retry_backoff is 1s";
  EXPECT_EQ(third[0].attempt(), 3);
  EXPECT_GT(third[0].delivery_id(), second[0].delivery_id());
  EXPECT_EQ(third[0].offset(), 0);

  // Attempt 3 = max_delivery_attempts: the next nack dead-letters it.
  ASSERT_TRUE(c.Nack({third[0].delivery_id()}, absl::Milliseconds(100)));
  EXPECT_EQ(WaitCommitted(group_, topic, {{0, 3}}), (std::map<int32_t, int64_t>{{0, 3}}))
      << "a dead-lettered event counts as acked";
  EXPECT_TRUE(c.Take(1, absl::Seconds(1)).empty())
      << "delivered again after max_delivery_attempts";
  std::vector<ConsumedRecord> dead = ReadTopic(dlq);
  ASSERT_EQ(dead.size(), 1u);
  const ConsumedRecord& r = dead[0];
  EXPECT_EQ(r.key, source[0].key);
  EXPECT_EQ(r.value, source[0].value);
  std::vector<kafka::Header> original;
  for (const kafka::Header& h : r.headers) {
    if (!absl::StartsWith(h.name, "eventbus.dlq.")) original.push_back(h);
  }
  EXPECT_EQ(original, source[0].headers) << "the original headers, unchanged";
  EXPECT_EQ(r.Header("eventbus.dlq.topic"), topic);
  EXPECT_EQ(r.Header("eventbus.dlq.partition"), "0");
  EXPECT_EQ(r.Header("eventbus.dlq.offset"), "0");
  EXPECT_EQ(r.Header("eventbus.dlq.attempts"), "3");
  EXPECT_EQ(r.Header("eventbus.dlq.group"), group_);
  ASSERT_TRUE(r.Header("eventbus.dlq.reason").has_value());
  EXPECT_EQ(*r.Header("eventbus.dlq.reason"),
            "max delivery attempts (3) reached; last: nacked");
  EXPECT_TRUE(c.ack_errors().empty()) << Describe(c.ack_errors());
  EXPECT_TRUE(c.Close().ok());
}

// 5, continued.
TEST_F(SubscribeTest, DeadLetterWritesTheEventAtOnceWithTheReason) {
  const std::string topic = UniqueTopic("sub-deadletter");
  const std::string dlq = UniqueTopic("sub-deadletter-custom");
  CreateTopic(topic, 1);
  CreateTopic(dlq, 1);
  ProduceRaw(topic, "k-1", "not json at all",
             {{"ce_specversion", "1.0"}, {"ce_id", "dl-1"}, {"ce_source", "//t"},
              {"ce_type", "com.example.dl"}, {"ce_tenant", "acme"},
              {"content-type", "text/plain"}});
  ProduceEvents(topic, 1, 1, 0, "dl-2");
  const std::vector<ConsumedRecord> source = ReadTopic(topic);
  ASSERT_EQ(source.size(), 2u);
  StartSidecar();

  v1::Subscription sub = MakeSubscription(topic, group_);
  sub.set_dead_letter_topic(dlq);
  SubscribeClient c(stub_.get(), sub);
  std::vector<v1::Delivery> got = c.Take(2, absl::Seconds(30));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].event().id(), "dl-1");
  EXPECT_EQ(got[0].event().extensions().at("tenant"), "acme");
  const absl::Time sent = absl::Now();
  ASSERT_TRUE(c.DeadLetter({got[0].delivery_id()}, "payload is not JSON"));

  std::vector<ConsumedRecord> dead;
  for (int i = 0; i < 50 && dead.empty(); ++i) {
    if (HighWatermarks(dlq).at(0) > 0) dead = ReadTopic(dlq);
    else absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_EQ(dead.size(), 1u) << "nothing on " << dlq << " 5 s after DeadLetter";
  std::cerr << "dead letter written within " << absl::Now() - sent << "\n";
  const ConsumedRecord& r = dead[0];
  EXPECT_EQ(r.key, "k-1");
  EXPECT_EQ(r.value, "not json at all");
  std::vector<kafka::Header> original;
  for (const kafka::Header& h : r.headers) {
    if (!absl::StartsWith(h.name, "eventbus.dlq.")) original.push_back(h);
  }
  EXPECT_EQ(original, source[0].headers);
  EXPECT_EQ(r.Header("eventbus.dlq.reason"), "payload is not JSON");
  EXPECT_EQ(r.Header("eventbus.dlq.topic"), topic);
  EXPECT_EQ(r.Header("eventbus.dlq.partition"), "0");
  EXPECT_EQ(r.Header("eventbus.dlq.offset"), "0");
  EXPECT_EQ(r.Header("eventbus.dlq.attempts"), "1");
  EXPECT_EQ(r.Header("eventbus.dlq.group"), group_);

  // Dead-lettered counts as acked: acking the second commits both.
  ASSERT_TRUE(c.Ack({got[1].delivery_id()}));
  EXPECT_EQ(WaitCommitted(group_, topic, {{0, 2}}), (std::map<int32_t, int64_t>{{0, 2}}));
  // It is no longer outstanding.
  ASSERT_TRUE(c.DeadLetter({got[0].delivery_id()}, "again"));
  ASSERT_TRUE(c.WaitAckErrors(1, absl::Seconds(5)));
  EXPECT_EQ(c.ack_errors()[0].delivery_id(), got[0].delivery_id());
  EXPECT_EQ(c.ack_errors()[0].status().code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ReadTopic(dlq).size(), 1u) << "dead-lettered twice";
  EXPECT_TRUE(c.Close().ok());
}

v1::Event FullEvent(const std::string& id) {
  v1::Event e;
  e.set_id(id);
  e.set_source("//orders/eu-1");
  e.set_type("com.example.order.created");
  e.set_spec_version("1.0");
  e.set_subject("orders/42");
  e.mutable_time()->set_seconds(1714566896);
  e.mutable_time()->set_nanos(789000000);
  e.set_data_content_type("application/json");
  e.set_data_schema("https://example.com/order.json");
  e.set_data(R"({"id":42})");
  (*e.mutable_extensions())["traceparent"] = "00-abc-def-01";
  (*e.mutable_extensions())["tenant"] = "acme";
  return e;
}

// 6.
TEST_F(SubscribeTest, EventsPublishedThroughTheSidecarArriveUnchanged) {
  const std::string binary = UniqueTopic("sub-roundtrip");
  const std::string structured = UniqueTopic("sub-roundtrip-structured");
  CreateTopic(binary, 3);
  CreateTopic(structured, 2);
  StartSidecar([&](server::Config& c) { c.structured_topics = {structured}; });

  std::map<std::string, std::pair<v1::PublishRequest, v1::PublishResponse>> published;
  for (const std::string& topic : {binary, structured}) {
    for (int i = 0; i < 3; ++i) {
      v1::PublishRequest req;
      req.set_topic(topic);
      req.set_key(absl::StrCat("order-", i));
      *req.mutable_event() = FullEvent(absl::StrCat(topic, "-", i));
      if (i == 1) req.mutable_event()->clear_extensions();
      if (i == 2) {
        req.mutable_event()->set_data_content_type("text/plain");
        req.mutable_event()->set_data("plain text");
        req.mutable_event()->clear_subject();
        req.mutable_event()->clear_data_schema();
      }
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
      v1::PublishResponse resp;
      grpc::Status s = stub_->Publish(&ctx, req, &resp);
      ASSERT_TRUE(s.ok()) << s.error_message();
      published[req.event().id()] = {req, resp};
    }
  }
  const absl::Time published_at = absl::Now();

  v1::Subscription sub = MakeSubscription(binary, group_);
  sub.add_topics(structured);
  SubscribeClient c(stub_.get(), sub);
  std::vector<v1::Delivery> got = c.Take(6, absl::Seconds(30));
  ASSERT_EQ(got.size(), 6u);
  std::set<std::string> seen;
  for (const v1::Delivery& d : got) {
    auto it = published.find(d.event().id());
    ASSERT_NE(it, published.end()) << d.ShortDebugString();
    const auto& [req, resp] = it->second;
    seen.insert(d.event().id());
    EXPECT_TRUE(MessageDifferencer::Equals(d.event(), req.event()))
        << "delivered " << d.event().ShortDebugString() << "\npublished "
        << req.event().ShortDebugString();
    EXPECT_EQ(d.topic(), req.topic());
    EXPECT_EQ(d.key(), req.key());
    EXPECT_EQ(d.partition(), resp.partition());
    EXPECT_EQ(d.offset(), resp.offset());
    EXPECT_EQ(d.attempt(), 1);
    EXPECT_FALSE(d.raw());
    EXPECT_TRUE(d.headers().empty()) << "headers are only for raw records";
    const absl::Time record_time =
        absl::FromUnixSeconds(d.record_time().seconds()) +
        absl::Nanoseconds(d.record_time().nanos());
    EXPECT_LE(record_time, published_at);
    EXPECT_GE(record_time, published_at - absl::Seconds(60));
  }
  EXPECT_EQ(seen.size(), 6u);
  ASSERT_TRUE(c.Ack(Ids(got)));
  const std::map<int32_t, int64_t> high_b = HighWatermarks(binary);
  const std::map<int32_t, int64_t> high_s = HighWatermarks(structured);
  EXPECT_EQ(WaitCommitted(group_, binary, high_b), high_b);
  EXPECT_EQ(WaitCommitted(group_, structured, high_s), high_s);
  EXPECT_TRUE(c.ack_errors().empty()) << Describe(c.ack_errors());
  EXPECT_TRUE(c.Close().ok());
}

// 7.
TEST_F(SubscribeTest, RecordsThatAreNotCloudEventsArriveRaw) {
  const std::string topic = UniqueTopic("sub-raw");
  CreateTopic(topic, 1);
  const std::string binary_value("\x00\x01\xff raw bytes", 13);
  const std::vector<kafka::Header> headers = {
      {"h1", "v1"}, {"content-type", "application/octet-stream"}, {"h1", "v2"},
      {"empty", ""}};
  ProduceRaw(topic, "raw-key", binary_value, headers);
  // ce_ headers without ce_type are not a CloudEvent either.
  ProduceRaw(topic, std::nullopt, "second", {{"ce_id", "x"}});
  ProduceRaw(topic, std::nullopt, "", {});
  StartSidecar();

  SubscribeClient c(stub_.get(), MakeSubscription(topic, group_));
  std::vector<v1::Delivery> got = c.Take(3, absl::Seconds(30));
  ASSERT_EQ(got.size(), 3u);
  EXPECT_TRUE(got[0].raw());
  EXPECT_EQ(got[0].event().data(), binary_value);
  EXPECT_EQ(got[0].event().data_content_type(), "application/octet-stream");
  EXPECT_EQ(got[0].key(), "raw-key");
  EXPECT_EQ(got[0].offset(), 0);
  ASSERT_EQ(got[0].headers_size(), 4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(got[0].headers(i).name(), headers[i].name) << i;
    EXPECT_EQ(got[0].headers(i).value(), headers[i].value) << i;
  }
  EXPECT_TRUE(got[1].raw());
  EXPECT_EQ(got[1].event().data(), "second");
  EXPECT_EQ(got[1].key(), "");
  ASSERT_EQ(got[1].headers_size(), 1);
  EXPECT_EQ(got[1].headers(0).name(), "ce_id");
  EXPECT_EQ(got[1].headers(0).value(), "x");
  EXPECT_TRUE(got[2].raw());
  EXPECT_EQ(got[2].event().data(), "");
  EXPECT_EQ(got[2].headers_size(), 0);
  for (const v1::Delivery& d : got) EXPECT_EQ(d.attempt(), 1);
  ASSERT_TRUE(c.Ack(Ids(got)));
  EXPECT_EQ(WaitCommitted(group_, topic, {{0, 3}}), (std::map<int32_t, int64_t>{{0, 3}}));
  EXPECT_TRUE(c.ack_errors().empty()) << Describe(c.ack_errors());
  EXPECT_TRUE(c.Close().ok());
}

// 7b. Kafka keys and headers are bytes; proto3 strings must be UTF-8. A key
// that is not (a Java LongSerializer's) arrives in raw_key, a record whose
// ce_ headers are not arrives raw, and neither breaks the message they are
// in: the deliveries after them arrive too.
TEST_F(SubscribeTest, KeysAndHeadersThatAreNotUtf8DoNotBreakTheStream) {
  const std::string topic = UniqueTopic("sub-utf8");
  CreateTopic(topic, 1);
  const std::vector<kafka::Header> event = {
      {"ce_specversion", "1.0"}, {"ce_id", "e1"}, {"ce_source", "//s"}, {"ce_type", "t"}};
  const std::string long_key("\x00\x00\x01\x8f\xff\x10\x00\x2a", 8);
  ProduceRaw(topic, long_key, "first", event);
  std::vector<kafka::Header> bad = event;
  bad.push_back({"ce_subject", "\xff\xfe"});
  ProduceRaw(topic, "k", "second", bad);
  ProduceRaw(topic, "k", "third", event);
  StartSidecar();

  SubscribeClient c(stub_.get(), MakeSubscription(topic, group_));
  std::vector<v1::Delivery> got = c.Take(3, absl::Seconds(30));
  ASSERT_EQ(got.size(), 3u) << "the stream broke on a record that is not UTF-8";
  EXPECT_FALSE(got[0].raw());
  EXPECT_EQ(got[0].key(), "");
  EXPECT_EQ(got[0].raw_key(), long_key);
  EXPECT_EQ(got[0].event().data(), "first");
  EXPECT_TRUE(got[1].raw());
  EXPECT_EQ(got[1].key(), "k");
  EXPECT_EQ(got[1].event().data(), "second");
  ASSERT_EQ(got[1].headers_size(), 5);
  EXPECT_EQ(got[1].headers(4).value(), "\xff\xfe");
  EXPECT_FALSE(got[2].raw());
  EXPECT_EQ(got[2].event().data(), "third");
  ASSERT_TRUE(c.Ack(Ids(got)));
  EXPECT_EQ(WaitCommitted(group_, topic, {{0, 3}}), (std::map<int32_t, int64_t>{{0, 3}}));
  EXPECT_TRUE(c.ack_errors().empty()) << Describe(c.ack_errors());
  EXPECT_TRUE(c.Close().ok());
}

// 8.
TEST_F(SubscribeTest, BadAcksGetAckErrorsAndTheStreamGoesOn) {
  const std::string topic = UniqueTopic("sub-ackerrors");
  CreateTopic(topic, 1);
  ProduceEvents(topic, 2, 1);
  StartSidecar();

  SubscribeClient c(stub_.get(), MakeSubscription(topic, group_));
  std::vector<v1::Delivery> got = c.Take(2, absl::Seconds(30));
  ASSERT_EQ(got.size(), 2u);
  const uint64_t first = got[0].delivery_id(), second = got[1].delivery_id();
  const uint64_t never = second + 1000;

  ASSERT_TRUE(c.Ack({never}));
  ASSERT_TRUE(c.Ack({0}));
  ASSERT_TRUE(c.Nack({never + 1}));
  ASSERT_TRUE(c.DeadLetter({never + 2}, "x"));
  ASSERT_TRUE(c.Ack({first}));
  ASSERT_TRUE(c.Ack({first}));
  ASSERT_TRUE(c.Nack({first}));
  ASSERT_TRUE(c.DeadLetter({first}, "late"));
  struct Want {
    uint64_t id;
    grpc::StatusCode code;
  };
  const std::vector<Want> want = {
      {never, grpc::StatusCode::NOT_FOUND},
      {0, grpc::StatusCode::NOT_FOUND},
      {never + 1, grpc::StatusCode::NOT_FOUND},
      {never + 2, grpc::StatusCode::NOT_FOUND},
      {first, grpc::StatusCode::FAILED_PRECONDITION},
      {first, grpc::StatusCode::FAILED_PRECONDITION},
      {first, grpc::StatusCode::FAILED_PRECONDITION},
  };
  ASSERT_TRUE(c.WaitAckErrors(want.size(), absl::Seconds(10)))
      << "got " << Describe(c.ack_errors());
  std::vector<v1::AckError> errors = c.ack_errors();
  ASSERT_EQ(errors.size(), want.size()) << Describe(errors);
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(errors[i].delivery_id(), want[i].id) << i << ": " << Describe(errors);
    EXPECT_EQ(errors[i].status().code(), want[i].code) << i << ": " << Describe(errors);
    EXPECT_FALSE(errors[i].status().message().empty()) << i;
  }

  // The stream goes on: the second delivery acks fine, and new events come.
  ASSERT_TRUE(c.Ack({second}));
  ProduceEvents(topic, 1, 1, 0, "later");
  std::vector<v1::Delivery> later = c.Take(1, absl::Seconds(15));
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(later[0].event().id(), "later-0");
  EXPECT_GT(later[0].delivery_id(), second);
  ASSERT_TRUE(c.Ack({later[0].delivery_id()}));
  EXPECT_EQ(WaitCommitted(group_, topic, {{0, 3}}), (std::map<int32_t, int64_t>{{0, 3}}));
  EXPECT_EQ(c.ack_errors().size(), want.size()) << Describe(c.ack_errors());

  // Bad acks right before the client closes its side still get their
  // AckErrors, before the stream's status: most of them arrive while the
  // write of the first is in flight.
  constexpr int kLast = 200;
  for (int i = 0; i < kLast; ++i) ASSERT_TRUE(c.Ack({never + 10 + i}));
  grpc::Status s = c.Close();
  EXPECT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
  EXPECT_EQ(c.ack_errors().size(), want.size() + kLast)
      << "AckErrors lost when the client closed its side";
}

struct BadStream {
  std::string name;
  std::vector<v1::SubscribeRequest> messages;
  std::string message_part;  // lower case
};

// 8, continued.
TEST_F(SubscribeTest, BadSubscriptionsEndTheStreamWithInvalidArgument) {
  const std::string topic = UniqueTopic("sub-bad");
  CreateTopic(topic, 1);
  StartSidecar();
  const v1::Subscription good = MakeSubscription(topic, group_);
  auto with = [&](const std::function<void(v1::Subscription&)>& edit) {
    v1::Subscription s = good;
    edit(s);
    return AsRequest(s);
  };
  v1::SubscribeRequest ack;
  ack.mutable_ack()->add_delivery_ids(1);
  const v1::SubscribeRequest empty;
  v1::SubscribeRequest modify_unset;
  modify_unset.mutable_modify_ack_deadline()->add_delivery_ids(1);
  v1::SubscribeRequest modify_long = modify_unset;
  *modify_long.mutable_modify_ack_deadline()->mutable_ack_deadline() =
      ToProto(absl::Minutes(11));
  const std::vector<BadStream> cases = {
      {"modify_ack_deadline without a deadline", {AsRequest(good), modify_unset},
       "modify_ack_deadline.ack_deadline"},
      {"modify_ack_deadline above 10min", {AsRequest(good), modify_long},
       "modify_ack_deadline.ack_deadline"},
      {"ack first", {ack}, "subscription"},
      {"empty first message", {empty}, "subscription"},
      {"no topics", {with([](auto& s) { s.clear_topics(); })}, "topics"},
      {"empty group", {with([](auto& s) { s.clear_group(); })}, "group"},
      {"invalid topic", {with([](auto& s) { s.add_topics("bad topic!"); })}, "topic"},
      {"empty topic", {with([](auto& s) { s.add_topics(""); })}, "topic"},
      {"second subscription", {AsRequest(good), AsRequest(good)}, "subscription"},
      {"max_outstanding_messages above the cap",
       {with([](auto& s) { s.set_max_outstanding_messages(100001); })},
       "max_outstanding_messages"},
      {"negative max_outstanding_messages",
       {with([](auto& s) { s.set_max_outstanding_messages(-1); })},
       "max_outstanding_messages"},
      {"max_outstanding_bytes above the cap",
       {with([](auto& s) { s.set_max_outstanding_bytes((int64_t{256} << 20) + 1); })},
       "max_outstanding_bytes"},
      {"negative max_outstanding_bytes",
       {with([](auto& s) { s.set_max_outstanding_bytes(-5); })},
       "max_outstanding_bytes"},
      {"ack_deadline below 1s",
       {with([](auto& s) { *s.mutable_ack_deadline() = ToProto(absl::Milliseconds(500)); })},
       "ack_deadline"},
      {"ack_deadline above 10min",
       {with([](auto& s) { *s.mutable_ack_deadline() = ToProto(absl::Minutes(10) + absl::Seconds(1)); })},
       "ack_deadline"},
      {"max_delivery_attempts above 1000",
       {with([](auto& s) { s.set_max_delivery_attempts(1001); })},
       "max_delivery_attempts"},
      {"negative max_delivery_attempts",
       {with([](auto& s) { s.set_max_delivery_attempts(-1); })},
       "max_delivery_attempts"},
  };
  for (const BadStream& bad : cases) {
    SCOPED_TRACE(bad.name);
    SubscribeClient c(stub_.get(), bad.messages, {.deadline = absl::Seconds(20)});
    std::optional<grpc::Status> s = c.WaitEnded(absl::Seconds(15));
    ASSERT_TRUE(s.has_value()) << bad.name << ": the stream did not end";
    EXPECT_EQ(s->error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << bad.name << ": " << s->error_code() << " " << s->error_message();
    EXPECT_TRUE(absl::StrContains(Lower(s->error_message()), bad.message_part))
        << bad.name << ": \"" << s->error_message() << "\" does not name "
        << bad.message_part;
    EXPECT_EQ(c.received(), 0u) << bad.name;
  }
}

// 8, continued: protocol misuse while a write is stuck behind a client that
// does not read, then a cancellation: the stream ends once (the sidecar
// neither crashes nor ends it twice) and the unacked events go to the next
// member whole.
TEST_F(SubscribeTest, CancelWhileTheLastWriteIsStuckEndsTheStreamOnce) {
  const std::string topic = UniqueTopic("sub-stuck-write");
  CreateTopic(topic, 1);
  constexpr int kEvents = 3000;
  const std::vector<Produced> events = ProduceEvents(topic, kEvents, 10, 4096);
  StartSidecar();

  v1::Subscription sub = MakeSubscription(topic, group_);
  sub.set_max_outstanding_messages(kEvents);
  sub.set_max_outstanding_bytes(64 << 20);
  {
    grpc::ClientContext ctx;
    auto stream = stub_->Subscribe(&ctx);
    ASSERT_TRUE(stream->Write(AsRequest(sub)));
    // 12 MB of deliveries and no reads: the sidecar's write waits on flow
    // control.
    absl::SleepFor(absl::Seconds(3));
    // A bad message ends the stream after that write ...
    ASSERT_TRUE(stream->Write(v1::SubscribeRequest()));
    absl::SleepFor(absl::Milliseconds(500));
    // ... and the client goes away before it completes.
    ctx.TryCancel();
    grpc::Status status = stream->Finish();
    EXPECT_FALSE(status.ok());
  }
  SubscribeClient next(stub_.get(), sub, {.auto_ack = true});
  EXPECT_TRUE(next.WaitReceived(kEvents, absl::Seconds(60)))
      << next.received() << " of " << kEvents;
  EXPECT_EQ(next.event_ids().size(), static_cast<size_t>(kEvents));
  EXPECT_EQ(WaitCommitted(group_, topic, {{0, kEvents}}),
            (std::map<int32_t, int64_t>{{0, kEvents}}));
  EXPECT_TRUE(next.Close().ok());
}

// 8, continued: the limits at their bounds are accepted.
TEST_F(SubscribeTest, LimitsAtTheirBoundsAreAccepted) {
  const std::string topic = UniqueTopic("sub-bounds");
  CreateTopic(topic, 1);
  ProduceEvents(topic, 1, 1);
  StartSidecar();
  v1::Subscription sub = MakeSubscription(topic, group_);
  sub.set_max_outstanding_messages(100000);
  sub.set_max_outstanding_bytes(int64_t{256} << 20);
  *sub.mutable_ack_deadline() = ToProto(absl::Minutes(10));
  sub.set_max_delivery_attempts(1000);
  SubscribeClient c(stub_.get(), sub);
  std::vector<v1::Delivery> got = c.Take(1, absl::Seconds(30));
  ASSERT_EQ(got.size(), 1u) << (c.WaitEnded(absl::ZeroDuration())
                                    ? c.WaitEnded(absl::ZeroDuration())->error_message()
                                    : "");
  ASSERT_TRUE(c.Ack(Ids(got)));
  EXPECT_EQ(WaitCommitted(group_, topic, {{0, 1}}), (std::map<int32_t, int64_t>{{0, 1}}));
  EXPECT_TRUE(c.Close().ok());
}

// 9.
TEST_F(SubscribeTest, MaxOutstandingMessagesStopsDeliveriesUntilAcksArrive) {
  const std::string topic = UniqueTopic("sub-flow");
  CreateTopic(topic, 3);
  constexpr int kEvents = 100;
  ProduceEvents(topic, kEvents, 10);
  StartSidecar();

  v1::Subscription sub = MakeSubscription(topic, group_);
  sub.set_max_outstanding_messages(10);
  SubscribeClient c(stub_.get(), sub);
  std::vector<v1::Delivery> held = c.Take(10, absl::Seconds(30));
  ASSERT_EQ(held.size(), 10u);
  absl::SleepFor(absl::Seconds(2));
  EXPECT_EQ(c.received(), 10u) << "more than max_outstanding_messages sent";
  for (const v1::Delivery& d : c.Take()) held.push_back(d);

  std::vector<v1::Delivery> five(held.begin(), held.begin() + 5);
  held.erase(held.begin(), held.begin() + 5);
  ASSERT_TRUE(c.Ack(Ids(five)));
  std::vector<v1::Delivery> more = c.Take(5, absl::Seconds(10));
  EXPECT_EQ(more.size(), 5u) << "acking 5 must let 5 more through";
  absl::SleepFor(absl::Milliseconds(1500));
  EXPECT_EQ(c.received(), 15u);
  for (const v1::Delivery& d : more) held.push_back(d);
  for (const v1::Delivery& d : c.Take()) held.push_back(d);

  // Ack everything as it comes: the rest arrives, never more than 10
  // outstanding.
  std::set<std::string> events;
  for (const SubscribeClient::Received& r : c.history()) events.insert(r.delivery.event().id());
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (events.size() < static_cast<size_t>(kEvents) && absl::Now() < deadline) {
    ASSERT_LE(held.size(), 10u);
    ASSERT_TRUE(c.Ack(Ids(held)));
    held = c.Take(1, absl::Seconds(5));
    for (const v1::Delivery& d : held) events.insert(d.event().id());
  }
  ASSERT_TRUE(c.Ack(Ids(held)));
  EXPECT_EQ(events.size(), static_cast<size_t>(kEvents));
  const std::map<int32_t, int64_t> high = HighWatermarks(topic);
  EXPECT_EQ(WaitCommitted(group_, topic, high), high);
  EXPECT_TRUE(c.ack_errors().empty()) << Describe(c.ack_errors());
  EXPECT_TRUE(c.Close().ok());
}

// 9, continued.
TEST_F(SubscribeTest, MaxOutstandingBytesStopsDeliveries) {
  const std::string topic = UniqueTopic("sub-flow-bytes");
  CreateTopic(topic, 1);
  ProduceEvents(topic, 20, 1, 10000);
  StartSidecar();

  v1::Subscription sub = MakeSubscription(topic, group_);
  sub.set_max_outstanding_bytes(25000);
  SubscribeClient c(stub_.get(), sub);
  ASSERT_TRUE(c.WaitReceived(1, absl::Seconds(30)));
  absl::SleepFor(absl::Seconds(2));
  // 10 KB each: two fit in 25,000 bytes; at most one more may overshoot.
  const size_t n = c.received();
  EXPECT_GE(n, 2u);
  EXPECT_LE(n, 3u) << "max_outstanding_bytes=25000 with 10 KB events";
  std::vector<v1::Delivery> held = c.Take();
  ASSERT_TRUE(c.Ack(Ids(held)));
  EXPECT_TRUE(c.WaitReceived(n + 2, absl::Seconds(10))) << "acks did not let more through";
  EXPECT_TRUE(c.Close().ok());
}

// 10.
TEST_F(SubscribeTest, UnackedDeliveryComesAgainAfterTheAckDeadline) {
  const std::string topic = UniqueTopic("sub-deadline");
  std::unique_ptr<SubscribeClient> client = SubscribeToOneEvent(topic);
  SubscribeClient& c = *client;
  std::vector<v1::Delivery> first = c.Take(1, absl::Seconds(30));
  ASSERT_EQ(first.size(), 1u);
  const absl::Time first_at = absl::Now();
  EXPECT_EQ(first[0].attempt(), 1);
  std::vector<v1::Delivery> again = c.Take(1, absl::Seconds(10));
  ASSERT_EQ(again.size(), 1u) << "not redelivered after the ack deadline";
  EXPECT_GE(absl::Now() - first_at, absl::Milliseconds(900));
  EXPECT_EQ(again[0].attempt(), 2);
  EXPECT_GT(again[0].delivery_id(), first[0].delivery_id());
  EXPECT_EQ(again[0].offset(), first[0].offset());
  EXPECT_EQ(again[0].partition(), first[0].partition());
  EXPECT_TRUE(MessageDifferencer::Equals(again[0].event(), first[0].event()));

  ASSERT_TRUE(c.Ack({first[0].delivery_id()}));
  ASSERT_TRUE(c.WaitAckErrors(1, absl::Seconds(5)));
  EXPECT_EQ(c.ack_errors()[0].delivery_id(), first[0].delivery_id());
  EXPECT_EQ(c.ack_errors()[0].status().code(), grpc::StatusCode::FAILED_PRECONDITION)
      << Describe(c.ack_errors());
  ASSERT_TRUE(c.Ack({again[0].delivery_id()}));
  EXPECT_EQ(WaitCommitted(group_, topic, {{0, 1}}), (std::map<int32_t, int64_t>{{0, 1}}));
  EXPECT_TRUE(c.Take(1, absl::Milliseconds(1500)).empty()) << "redelivered after its ack";
  EXPECT_EQ(c.ack_errors().size(), 1u) << Describe(c.ack_errors());
  EXPECT_TRUE(c.Close().ok());
}

// A lease: a delivery whose deadline the client keeps extending is not
// redelivered, however long it takes; once the client stops, it is
// redelivered one deadline after the last extension. An id the stream does
// not hold gets an AckError, and the stream goes on.
TEST_F(SubscribeTest, ModifyAckDeadlineKeepsASlowDeliveryFromBeingRedelivered) {
  const std::string topic = UniqueTopic("sub-lease");
  std::unique_ptr<SubscribeClient> client = SubscribeToOneEvent(topic);
  SubscribeClient& c = *client;
  std::vector<v1::Delivery> first = c.Take(1, absl::Seconds(30));
  ASSERT_EQ(first.size(), 1u);
  const uint64_t id = first[0].delivery_id();
  // 1.6 s, past the 1 s deadline, extended by 1 s every 400 ms (the rules
  // of leases are DeliveryLedgerTest's; this proves the stream applies
  // them).
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(c.ModifyAckDeadline({id}, absl::Seconds(1)));
    EXPECT_TRUE(c.Take(1, absl::Milliseconds(400)).empty())
        << "redelivered while its lease was being extended, round " << i;
  }
  ASSERT_TRUE(c.ModifyAckDeadline({id + 1000}, absl::Seconds(1)));
  ASSERT_TRUE(c.WaitAckErrors(1, absl::Seconds(5)));
  EXPECT_EQ(c.ack_errors()[0].delivery_id(), id + 1000);
  EXPECT_EQ(c.ack_errors()[0].status().code(), grpc::StatusCode::NOT_FOUND)
      << Describe(c.ack_errors());

  // A longer lease, then none: redelivered after it.
  ASSERT_TRUE(c.ModifyAckDeadline({id}, absl::Seconds(2)));
  const absl::Time extended_at = absl::Now();
  std::vector<v1::Delivery> again = c.Take(1, absl::Seconds(15));
  ASSERT_EQ(again.size(), 1u) << "not redelivered after the lease ran out";
  EXPECT_GE(absl::Now() - extended_at, absl::Milliseconds(1900));
  EXPECT_EQ(again[0].attempt(), 2);
  EXPECT_EQ(again[0].offset(), first[0].offset());
  ASSERT_TRUE(c.ModifyAckDeadline({id}, absl::Seconds(1)));
  ASSERT_TRUE(c.WaitAckErrors(2, absl::Seconds(5)));
  EXPECT_EQ(c.ack_errors()[1].status().code(), grpc::StatusCode::FAILED_PRECONDITION)
      << Describe(c.ack_errors());
  ASSERT_TRUE(c.Ack({again[0].delivery_id()}));
  EXPECT_EQ(WaitCommitted(group_, topic, {{0, 1}}), (std::map<int32_t, int64_t>{{0, 1}}));
  EXPECT_TRUE(c.Close().ok());
}

// 11.
TEST_F(SubscribeTest, PerKeyOrderingKeepsOneOutstandingDeliveryPerKey) {
  const std::string topic = UniqueTopic("sub-perkey");
  CreateTopic(topic, 1);
  constexpr int kKeys = 3, kPerKey = 20;
  const std::vector<Produced> events = ProduceEvents(topic, kKeys * kPerKey, kKeys);
  StartSidecar();

  v1::Subscription sub = MakeSubscription(topic, group_);
  sub.set_ordering(v1::ORDERING_PER_KEY);
  SubscribeClient c(stub_.get(), sub);
  std::map<std::string, int64_t> outstanding;  // key -> offset
  std::map<std::string, std::vector<int64_t>> order;
  size_t max_concurrent = 0;
  std::set<std::string> acked;
  std::mt19937 rng(3);
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (acked.size() < events.size() && absl::Now() < deadline) {
    for (const v1::Delivery& d : c.Take(1, absl::Seconds(2))) {
      EXPECT_FALSE(outstanding.contains(d.key()))
          << "offset " << d.offset() << " of key " << d.key()
          << " sent while offset " << outstanding[d.key()] << " is outstanding";
      outstanding[d.key()] = d.offset();
      order[d.key()].push_back(d.offset());
      max_concurrent = std::max(max_concurrent, outstanding.size());
      absl::SleepFor(absl::Milliseconds(1));
    }
    // Hold them a moment, so a server that ignored the ordering would show it.
    absl::SleepFor(absl::Milliseconds(50));
    std::vector<std::string> keys;
    for (const auto& [k, o] : outstanding) keys.push_back(k);
    std::shuffle(keys.begin(), keys.end(), rng);
    for (const std::string& k : keys) {
      for (const SubscribeClient::Received& r : c.history()) {
        if (r.delivery.key() == k && r.delivery.offset() == outstanding[k]) {
          acked.insert(r.delivery.event().id());
          outstanding.erase(k);
          ASSERT_TRUE(c.Ack({r.delivery.delivery_id()}));
          break;
        }
      }
    }
  }
  EXPECT_EQ(acked.size(), events.size());
  EXPECT_EQ(max_concurrent, static_cast<size_t>(kKeys))
      << "different keys should be outstanding at once";
  for (int k = 0; k < kKeys; ++k) {
    const std::string key = absl::StrCat("key-", k);
    std::vector<int64_t> want;
    for (const Produced& p : events) {
      if (p.key == key) want.push_back(p.offset);
    }
    EXPECT_EQ(order[key], want) << "deliveries of " << key << " in offset order";
  }
  EXPECT_TRUE(c.ack_errors().empty()) << Describe(c.ack_errors());
  EXPECT_EQ(WaitCommitted(group_, topic, {{0, kKeys * kPerKey}}),
            (std::map<int32_t, int64_t>{{0, kKeys * kPerKey}}));
  EXPECT_TRUE(c.Close().ok());
}

// 11, continued.
TEST_F(SubscribeTest, PerPartitionOrderingKeepsOneOutstandingDeliveryPerPartition) {
  const std::string topic = UniqueTopic("sub-perpartition");
  CreateTopic(topic, 2);
  constexpr int kEvents = 30;
  ProduceEvents(topic, kEvents, 10);
  StartSidecar();

  v1::Subscription sub = MakeSubscription(topic, group_);
  sub.set_ordering(v1::ORDERING_PER_PARTITION);
  SubscribeClient c(stub_.get(), sub);
  std::map<int32_t, int64_t> last;
  size_t max_concurrent = 0, acked = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (acked < static_cast<size_t>(kEvents) && absl::Now() < deadline) {
    std::vector<v1::Delivery> got = c.Take(1, absl::Seconds(2));
    absl::SleepFor(absl::Milliseconds(30));
    for (const v1::Delivery& d : c.Take()) got.push_back(d);
    std::set<int32_t> partitions;
    for (const v1::Delivery& d : got) {
      EXPECT_TRUE(partitions.insert(d.partition()).second)
          << "two outstanding deliveries of partition " << d.partition();
      if (last.contains(d.partition())) {
        EXPECT_GT(d.offset(), last[d.partition()]);
      }
      last[d.partition()] = d.offset();
    }
    max_concurrent = std::max(max_concurrent, partitions.size());
    ASSERT_TRUE(c.Ack(Ids(got)));
    acked += got.size();
  }
  EXPECT_EQ(acked, static_cast<size_t>(kEvents));
  EXPECT_EQ(max_concurrent, 2u) << "both partitions should be outstanding at once";
  EXPECT_TRUE(c.ack_errors().empty()) << Describe(c.ack_errors());
  EXPECT_TRUE(c.Close().ok());
}

TEST_F(SubscribeTest, StartPositionsLatestAndTime) {
  const std::string topic = UniqueTopic("sub-start");
  CreateTopic(topic, 1);
  ProduceEvents(topic, 5, 1, 0, "old");
  absl::SleepFor(absl::Milliseconds(1100));
  const absl::Time start = absl::Now();
  absl::SleepFor(absl::Milliseconds(100));
  ProduceEvents(topic, 3, 1, 0, "new");
  StartSidecar();

  // START_POSITION_TIME: from the first event at or after start_time.
  v1::Subscription by_time = MakeSubscription(topic, group_);
  by_time.set_start_position(v1::START_POSITION_TIME);
  by_time.mutable_start_time()->set_seconds(absl::ToUnixSeconds(start));
  by_time.mutable_start_time()->set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(start - absl::FromUnixSeconds(absl::ToUnixSeconds(start)))));
  {
    SubscribeClient c(stub_.get(), by_time);
    std::vector<v1::Delivery> got = c.Take(3, absl::Seconds(30));
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].event().id(), "new-0");
    EXPECT_EQ(got[0].offset(), 5);
    ASSERT_TRUE(c.Ack(Ids(got)));
    EXPECT_EQ(WaitCommitted(group_, topic, {{0, 8}}), (std::map<int32_t, int64_t>{{0, 8}}));
    EXPECT_TRUE(c.Close().ok());
  }

  // START_POSITION_LATEST (the default): only events after subscribing.
  const std::string latest_group = UniqueTopic("group-latest");
  v1::Subscription latest = MakeSubscription(topic, latest_group);
  latest.clear_start_position();
  SubscribeClient c(stub_.get(), latest);
  std::vector<v1::Delivery> got;
  for (int i = 0; i < 40 && got.empty(); ++i) {
    ProduceEvents(topic, 1, 1, 0, absl::StrCat("latest-", i));
    got = c.Take(1, absl::Milliseconds(500));
  }
  ASSERT_FALSE(got.empty()) << "nothing delivered from the latest position";
  for (const v1::Delivery& d : got) {
    EXPECT_GE(d.offset(), 8) << d.event().id() << " was there before subscribing";
    EXPECT_TRUE(absl::StartsWith(d.event().id(), "latest-")) << d.event().id();
  }
  EXPECT_TRUE(c.Close().ok());
}

}  // namespace
}  // namespace eventbus::testing

namespace eventbus::testing {
namespace {

TEST_F(SubscribeTest, StreamsBeyondMaxStreamsAreRefused) {
  const std::string topic = UniqueTopic("sub-max-streams");
  CreateTopic(topic, 1);
  StartSidecar([](server::Config& c) { c.subscribe_max_streams = 1; });
  // The two streams open concurrently: whichever the server takes second is
  // refused, the other goes on.
  SubscribeClient first(stub_.get(), MakeSubscription(topic, group_));
  SubscribeClient second(stub_.get(), MakeSubscription(topic, group_));
  std::optional<grpc::Status> ended;
  SubscribeClient* kept = nullptr;
  for (int i = 0; i < 100 && !ended; ++i) {
    for (auto [a, b] : {std::pair(&first, &second), std::pair(&second, &first)}) {
      if (!ended && (ended = a->WaitEnded(absl::Milliseconds(50)))) kept = b;
    }
  }
  ASSERT_TRUE(ended.has_value()) << "neither stream was refused";
  EXPECT_EQ(ended->error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(ended->error_message(), "subscribe.max_streams"))
      << ended->error_message();
  EXPECT_FALSE(kept->WaitEnded(absl::Milliseconds(200)).has_value());
  EXPECT_TRUE(kept->Close().ok());
}

}  // namespace
}  // namespace eventbus::testing
