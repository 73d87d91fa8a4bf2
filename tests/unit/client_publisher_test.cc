// client::Publisher against a real in-process EventBusService (bound to
// 127.0.0.1:0) over a FakeProducer.

#include "client/cpp/publisher.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <future>
#include <map>
#include <optional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/event_bus_service.h"
#include "tests/unit/fake_producer.h"

namespace eventbus::client {
namespace {

using ::testing::HasSubstr;

v1::PublishRequest Request(const std::string& key, const std::string& data) {
  v1::PublishRequest r;
  r.set_topic("orders");
  r.set_key(key);
  r.mutable_event()->set_type("com.example.order.created");
  r.mutable_event()->set_data(data);
  return r;
}

// A server for `service` on 127.0.0.1, any free port (into `port`).
std::unique_ptr<grpc::Server> StartOn127(grpc::Service* service, int* port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           port);
  builder.RegisterService(service);
  return builder.BuildAndStart();
}

class ClientPublisherTest : public ::testing::Test {
 protected:
  void Start(server::PublishOptions options = {}) {
    options.default_source = "//client/test";
    service_ = std::make_unique<server::EventBusService>(&producer_, options);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    address_ = absl::StrCat("127.0.0.1:", port_);
  }

  void TearDown() override {
    producer_.Release();
    if (server_ != nullptr) {
      server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    }
  }

  // Every event's key, in the order the producer saw them.
  std::vector<std::string> ProducedData() {
    std::vector<std::string> out;
    for (const auto& c : producer_.calls()) out.push_back(c.record.value);
    return out;
  }

  fakes::FakeProducer producer_;
  std::unique_ptr<server::EventBusService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string address_;
};

TEST_F(ClientPublisherTest, UnaryPublishReturnsWhereTheEventWent) {
  ASSERT_NO_FATAL_FAILURE(Start());
  producer_.CompleteWith(absl::OkStatus(), /*partition=*/2, /*first_offset=*/7);
  Publisher publisher(address_);
  absl::StatusOr<PublishResult> r = publisher.Publish(Request("k", "x"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->partition, 2);
  EXPECT_EQ(r->offset, 7);
  EXPECT_EQ(r->topic, "orders");
  EXPECT_FALSE(r->event_id.empty());
}

TEST_F(ClientPublisherTest, UnaryPublishErrorKeepsCodeAndMessage) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Publisher publisher(address_);
  v1::PublishRequest bad = Request("k", "x");
  bad.mutable_event()->clear_type();
  absl::StatusOr<PublishResult> r = publisher.Publish(bad);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("event.type"));
}

TEST_F(ClientPublisherTest, AsyncResultsMatchTheirRequestsWhateverTheOrder) {
  ASSERT_NO_FATAL_FAILURE(Start());
  // Each event's offset is derived from its data, and the producer answers
  // in reverse order: only correlation matching gets every result right.
  producer_.CompleteWith([](const kafka::Record& r, int64_t) {
    kafka::DeliveryResult d;
    d.partition = 0;
    d.offset = 1000 + std::stoll(r.value);
    return d;
  });
  producer_.Hold();
  Publisher publisher(address_);
  constexpr int kEvents = 300;
  std::vector<std::future<absl::StatusOr<PublishResult>>> futures;
  for (int i = 0; i < kEvents; ++i) {
    futures.push_back(publisher.PublishAsync(
        Request(absl::StrCat("key-", i), absl::StrCat(i))));
  }
  ASSERT_TRUE(producer_.WaitForHeld(kEvents, absl::Seconds(5)));
  producer_.Release(/*keep_holding=*/false, /*reverse=*/true);
  for (int i = 0; i < kEvents; ++i) {
    absl::StatusOr<PublishResult> r = futures[i].get();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->offset, 1000 + i) << "event " << i;
  }
  ASSERT_TRUE(publisher.Flush(absl::Seconds(5)).ok());
  EXPECT_EQ(publisher.streams_opened(), 1);
  EXPECT_TRUE(publisher.Close().ok());
}

TEST_F(ClientPublisherTest, PerEventErrorsKeepTheirCodeAndMessage) {
  ASSERT_NO_FATAL_FAILURE(Start());
  Publisher publisher(address_);
  v1::PublishRequest bad = Request("k", "x");
  bad.set_topic("no spaces allowed");
  auto bad_result = publisher.PublishAsync(bad);
  auto good_result = publisher.PublishAsync(Request("k", "y"));
  absl::StatusOr<PublishResult> b = bad_result.get();
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(b.status().message(), HasSubstr("topic"));
  EXPECT_TRUE(good_result.get().ok());
  EXPECT_TRUE(publisher.Close().ok());
}

TEST_F(ClientPublisherTest, EventsQueuedDuringAWriteShareTheNextMessage) {
  ASSERT_NO_FATAL_FAILURE(Start());
  PublisherOptions options;
  options.batch_size = 100;
  Publisher publisher(address_, options);
  constexpr int kEvents = 2000;
  std::atomic<int> ok{0};
  for (int i = 0; i < kEvents; ++i) {
    publisher.PublishAsync(Request("same-key", absl::StrCat(i)),
                           [&ok](absl::StatusOr<PublishResult> r) {
                             if (r.ok()) ++ok;
                           });
  }
  ASSERT_TRUE(publisher.Flush(absl::Seconds(10)).ok());
  EXPECT_EQ(ok.load(), kEvents);
  // One key: the server produces in the order written, so the order the
  // producer saw is the order handed in.
  std::vector<std::string> data = ProducedData();
  ASSERT_EQ(data.size(), static_cast<size_t>(kEvents));
  for (int i = 0; i < kEvents; ++i) ASSERT_EQ(data[i], absl::StrCat(i));
  EXPECT_TRUE(publisher.Close().ok());
}

// A stream service that records the size of every request message and
// answers each event OK: batching as seen on the wire. It reads nothing until
// Open(), so a client's writes stop once the transport's flow-control window
// is full and its events pile up behind the one write in flight, however
// fast or slow the build runs.
class RecordingService final : public v1::EventBus::CallbackService {
 public:
  grpc::ServerBidiReactor<v1::PublishBatchRequest, v1::PublishBatchResponse>*
  PublishStream(grpc::CallbackServerContext*) override {
    class Reactor final : public grpc::ServerBidiReactor<v1::PublishBatchRequest,
                                                         v1::PublishBatchResponse> {
     public:
      explicit Reactor(RecordingService* s) : s_(s) {
        absl::MutexLock lock(&s_->mu_);
        if (s_->open_) {
          StartRead(&request_);
        } else {
          s_->waiting_ = [this] { StartRead(&request_); };
        }
      }
      void OnReadDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status::OK);
          return;
        }
        s_->Record(request_.requests_size());
        response_.Clear();
        for (const auto& r : request_.requests()) {
          v1::PublishResponse* out = response_.add_responses();
          out->set_correlation_id(r.correlation_id());
          out->set_topic(r.topic());
        }
        StartWrite(&response_);
      }
      void OnWriteDone(bool) override { StartRead(&request_); }
      void OnDone() override { delete this; }

     private:
      RecordingService* s_;
      v1::PublishBatchRequest request_;
      v1::PublishBatchResponse response_;
    };
    return new Reactor(this);
  }
  // Starts reading: at once for a stream already open, else when it opens.
  void Open() {
    std::function<void()> start;
    {
      absl::MutexLock lock(&mu_);
      open_ = true;
      start = std::exchange(waiting_, nullptr);
    }
    if (start) start();
  }
  void Record(int n) {
    absl::MutexLock lock(&mu_);
    sizes_.push_back(n);
  }
  std::vector<int> sizes() {
    absl::MutexLock lock(&mu_);
    return sizes_;
  }

 private:
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  // Starts the reads of the stream that opened before Open().
  std::function<void()> waiting_ ABSL_GUARDED_BY(mu_);
  std::vector<int> sizes_ ABSL_GUARDED_BY(mu_);
};

TEST(ClientPublisherBatchingTest, ManyEventsGoInOneMessageUpToBatchSize) {
  RecordingService service;
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartOn127(&service, &port);
  ASSERT_NE(server, nullptr);
  {
    PublisherOptions options;
    options.batch_size = 50;
    Publisher publisher(absl::StrCat("127.0.0.1:", port), options);
    // 1 KiB each: 1,000 of them are far more than the flow-control window
    // lets through before the server reads.
    constexpr int kEvents = 1000;
    const std::string data(1024, 'x');
    for (int i = 0; i < kEvents; ++i) {
      publisher.PublishAsync(Request("k", data), [](auto) {});
    }
    service.Open();
    ASSERT_TRUE(publisher.Flush(absl::Seconds(10)).ok());
    EXPECT_TRUE(publisher.Close().ok());
    std::vector<int> sizes = service.sizes();
    int total = 0;
    int largest = 0;
    int in_full_messages = 0;
    for (int n : sizes) {
      total += n;
      largest = std::max(largest, n);
      if (n == options.batch_size) in_full_messages += n;
    }
    EXPECT_EQ(total, kEvents);
    EXPECT_EQ(largest, 50);
    // Single events while the flow-control window had room, then messages
    // of 50. The window is 64 KiB at first but gRPC may grow it (once under
    // AddressSanitizer: 257 messages, most of them single events), so the
    // bound is on the events that went in full messages: most of them.
    EXPECT_GE(in_full_messages, kEvents / 2)
        << "events were not batched: " << sizes.size() << " messages for "
        << kEvents << " events";
  }
  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
}

TEST_F(ClientPublisherTest, PublishAsyncBlocksWhileTheBufferIsFull) {
  ASSERT_NO_FATAL_FAILURE(Start());
  producer_.Hold();
  PublisherOptions options;
  options.max_buffered = 10;
  Publisher publisher(address_, options);
  for (int i = 0; i < 10; ++i) {
    publisher.PublishAsync(Request("k", absl::StrCat(i)), [](auto) {});
  }
  ASSERT_TRUE(producer_.WaitForHeld(10, absl::Seconds(5)));
  std::atomic<bool> returned{false};
  std::thread eleventh([&] {
    publisher.PublishAsync(Request("k", "10"), [](auto) {});
    returned = true;
  });
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_FALSE(returned.load()) << "PublishAsync did not block at max_buffered";
  EXPECT_EQ(publisher.outstanding(), 10);
  producer_.Release();
  eleventh.join();
  EXPECT_TRUE(returned.load());
  ASSERT_TRUE(publisher.Flush(absl::Seconds(5)).ok());
  EXPECT_EQ(producer_.produce_count(), 11u);
  EXPECT_TRUE(publisher.Close().ok());
}

TEST_F(ClientPublisherTest, BrokenStreamCompletesEveryOutstandingEvent) {
  ASSERT_NO_FATAL_FAILURE(Start());
  producer_.Hold();
  Publisher publisher(address_);
  std::vector<std::future<absl::StatusOr<PublishResult>>> futures;
  for (int i = 0; i < 20; ++i) {
    futures.push_back(publisher.PublishAsync(Request("k", absl::StrCat(i))));
  }
  ASSERT_TRUE(producer_.WaitForHeld(20, absl::Seconds(5)));
  // Draining ends the stream with UNAVAILABLE only once every read event
  // has its result; shutting the server down with a short deadline cancels
  // the call instead, before the held results come back.
  server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Milliseconds(100)));
  for (auto& f : futures) {
    ASSERT_EQ(f.wait_for(std::chrono::seconds(5)), std::future_status::ready);
    absl::StatusOr<PublishResult> r = f.get();
    ASSERT_FALSE(r.ok());
    // Sent, and the connection went without a result: the server may well
    // have them (here it does: they are delivered below), so not
    // UNAVAILABLE ("not written") but UNKNOWN, naming why.
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnknown) << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr("may or may not"));
  }
  EXPECT_TRUE(publisher.Flush(absl::Seconds(1)).ok());
  EXPECT_EQ(publisher.outstanding(), 0);
  producer_.Release();
  ASSERT_TRUE(producer_.WaitForDelivered(20, absl::Seconds(5)));
  server_.reset();

  // A new server on the same port: the next event opens a new stream.
  ASSERT_NO_FATAL_FAILURE([&] {
    service_ = std::make_unique<server::EventBusService>(
        &producer_, server::PublishOptions{});
    grpc::ServerBuilder builder;
    builder.AddListeningPort(address_, grpc::InsecureServerCredentials());
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }());
  absl::StatusOr<PublishResult> again = absl::UnknownError("unset");
  for (int attempt = 0; attempt < 50; ++attempt) {
    again = publisher.PublishAsync(Request("k", "again")).get();
    if (again.ok()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(again.ok()) << again.status();
  EXPECT_GE(publisher.streams_opened(), 2);
}

TEST_F(ClientPublisherTest, DrainingServerEndsStreamAndUnansweredEventsFail) {
  ASSERT_NO_FATAL_FAILURE(Start());
  producer_.Hold();
  Publisher publisher(address_);
  auto first = publisher.PublishAsync(Request("k", "1"));
  ASSERT_TRUE(producer_.WaitForHeld(1, absl::Seconds(5)));
  service_->Drain();
  // Sent on the draining stream: the sidecar does not publish it, and says
  // so (its own result, or the stream's end with the "drained" trailer):
  // UNAVAILABLE, not UNKNOWN.
  auto late = publisher.PublishAsync(Request("k", "1b"));
  absl::SleepFor(absl::Milliseconds(100));
  producer_.Release();
  absl::StatusOr<PublishResult> r = first.get();
  EXPECT_TRUE(r.ok()) << r.status();
  absl::StatusOr<PublishResult> late_result = late.get();
  EXPECT_EQ(late_result.status().code(), absl::StatusCode::kUnavailable)
      << late_result.status();
  EXPECT_EQ(producer_.produce_count(), 1u);
  // The stream ended with UNAVAILABLE; the next event opens a new stream,
  // which the draining service ends at once.
  absl::StatusOr<PublishResult> next = publisher.PublishAsync(Request("k", "2")).get();
  EXPECT_EQ(next.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(next.status().message(), HasSubstr("shutting down"));
}

TEST_F(ClientPublisherTest, FlushTimesOutWhileResultsAreMissing) {
  ASSERT_NO_FATAL_FAILURE(Start());
  producer_.Hold();
  Publisher publisher(address_);
  publisher.PublishAsync(Request("k", "1"), [](auto) {});
  absl::Status flushed = publisher.Flush(absl::Milliseconds(200));
  EXPECT_EQ(flushed.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(flushed.message(), HasSubstr("1 events"));
  producer_.Release();
  EXPECT_TRUE(publisher.Flush(absl::Seconds(5)).ok());
}

TEST_F(ClientPublisherTest, CloseWaitsForEveryResultThenRefusesNewEvents) {
  ASSERT_NO_FATAL_FAILURE(Start());
  producer_.Hold();
  Publisher publisher(address_);
  std::atomic<int> ok{0};
  for (int i = 0; i < 50; ++i) {
    publisher.PublishAsync(Request("k", absl::StrCat(i)),
                           [&ok](absl::StatusOr<PublishResult> r) {
                             if (r.ok()) ++ok;
                           });
  }
  ASSERT_TRUE(producer_.WaitForHeld(50, absl::Seconds(5)));
  std::thread release([&] {
    absl::SleepFor(absl::Milliseconds(200));
    producer_.Release();
  });
  EXPECT_TRUE(publisher.Close().ok());
  release.join();
  EXPECT_EQ(ok.load(), 50);
  absl::StatusOr<PublishResult> after = publisher.PublishAsync(Request("k", "x")).get();
  EXPECT_EQ(after.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(publisher.Close().ok()) << "Close is idempotent";
}

// PublishStream that answers every event OK but never ends the stream after
// the client half-closes; only a cancellation ends it.
class NeverEndingPublishService final : public v1::EventBus::CallbackService {
 public:
  grpc::ServerBidiReactor<v1::PublishBatchRequest, v1::PublishBatchResponse>*
  PublishStream(grpc::CallbackServerContext*) override {
    return new Reactor();
  }

 private:
  class Reactor final : public grpc::ServerBidiReactor<v1::PublishBatchRequest,
                                                       v1::PublishBatchResponse> {
   public:
    Reactor() { StartRead(&request_); }
    void OnReadDone(bool ok) override {
      if (!ok) return;  // half-closed: keep the stream open
      response_.Clear();
      for (const v1::PublishRequest& r : request_.requests()) {
        v1::PublishResponse* out = response_.add_responses();
        out->set_correlation_id(r.correlation_id());
        out->set_topic(r.topic());
        out->set_partition(0);
        out->set_offset(7);
      }
      StartWrite(&response_);
    }
    void OnWriteDone(bool ok) override {
      if (ok) StartRead(&request_);
    }
    void OnCancel() override {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
    }
    void OnDone() override { delete this; }

   private:
    v1::PublishBatchRequest request_;
    v1::PublishBatchResponse response_;
  };
};

TEST(ClientPublisherCloseTest, CloseCancelsAStreamTheServerDoesNotEnd) {
  NeverEndingPublishService service;
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartOn127(&service, &port);
  ASSERT_NE(server, nullptr);
  PublisherOptions options;
  options.deadline = absl::Milliseconds(500);
  Publisher publisher(absl::StrCat("127.0.0.1:", port), options);
  absl::StatusOr<PublishResult> r = publisher.PublishAsync(Request("k", "x")).get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->offset, 7);
  absl::Status closed = publisher.Close();
  EXPECT_EQ(closed.code(), absl::StatusCode::kDeadlineExceeded) << closed;
  EXPECT_THAT(closed.message(), HasSubstr("did not end the stream"));
  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
}

TEST(ClientPublisherNoServerTest, EventsFailUnavailableWhenNoServerListens) {
  // A port that was free a moment ago: nothing listens there.
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
  Publisher publisher(absl::StrCat("127.0.0.1:", port));
  absl::StatusOr<PublishResult> r = publisher.PublishAsync(Request("k", "x")).get();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  // The future is ready while `done` still runs; Flush waits for it to return.
  EXPECT_TRUE(publisher.Flush(absl::Seconds(5)).ok());
  EXPECT_EQ(publisher.outstanding(), 0);
}

}  // namespace
}  // namespace eventbus::client
