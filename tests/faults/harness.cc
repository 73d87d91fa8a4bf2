#include "tests/faults/harness.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/integration/kafka_test_env.h"

namespace eventbus::testing {
namespace {

// The codes a publish may end with under broker faults (see PublishResponse
// in the proto). Anything else under a fault is a bug.
const std::set<absl::StatusCode>& DocumentedFaultCodes() {
  static const auto* codes = new std::set<absl::StatusCode>{
      absl::StatusCode::kUnavailable, absl::StatusCode::kDeadlineExceeded,
      absl::StatusCode::kUnknown, absl::StatusCode::kResourceExhausted};
  return *codes;
}

std::string CodeName(absl::StatusCode code) {
  return absl::StatusCodeToString(code);
}

v1::PublishRequest MakeRequest(const std::string& topic, const std::string& id,
                               const std::string& key, size_t value_bytes) {
  v1::PublishRequest r;
  r.set_topic(topic);
  r.set_key(key);
  v1::Event* e = r.mutable_event();
  e->set_id(id);
  e->set_type("dev.eventbus.fault-test");
  e->set_source("//eventbus/fault-test");
  std::string data = id;
  if (data.size() < value_bytes) data.resize(value_bytes, '.');
  e->set_data(std::move(data));
  return r;
}

}  // namespace

// ------------------------------------------------------------ PublishLedger

size_t PublishLedger::Add(std::string id, std::string key, std::string sender,
                          int64_t seq) {
  absl::MutexLock lock(&mu_);
  Event e;
  e.id = std::move(id);
  e.key = std::move(key);
  e.sender = std::move(sender);
  e.seq = seq;
  e.sent = absl::Now();
  events_.push_back(std::move(e));
  return events_.size() - 1;
}

void PublishLedger::Complete(size_t index,
                             const absl::StatusOr<client::PublishResult>& result) {
  absl::MutexLock lock(&mu_);
  Event& e = events_[index];
  e.done = absl::Now();
  if (result.ok()) {
    e.result = absl::OkStatus();
    e.partition = result->partition;
    e.offset = result->offset;
    ++acked_;
    last_ack_ = e.done;
  } else {
    e.result = result.status();
  }
}

std::vector<PublishLedger::Event> PublishLedger::Snapshot() const {
  absl::MutexLock lock(&mu_);
  return events_;
}

int64_t PublishLedger::acked() const {
  absl::MutexLock lock(&mu_);
  return acked_;
}

absl::Time PublishLedger::last_ack() const {
  absl::MutexLock lock(&mu_);
  return last_ack_;
}

bool PublishLedger::WaitAcked(int64_t n, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  const int64_t target = acked_ + n;
  auto reached = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return acked_ >= target;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

// ------------------------------------------------------------ PublishLoad

PublishLoad::PublishLoad(std::string address, LoadOptions options,
                         PublishLedger* ledger)
    : address_(std::move(address)), options_(std::move(options)), ledger_(ledger) {
  for (int i = 0; i < options_.streams; ++i) {
    threads_.emplace_back([this, i] { StreamLoop(i); });
  }
  for (int i = 0; i < options_.unary; ++i) {
    threads_.emplace_back([this, i] { UnaryLoop(i); });
  }
}

PublishLoad::~PublishLoad() { Stop(); }

void PublishLoad::Stop() {
  stop_.store(true);
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void PublishLoad::Pace(absl::Time start, int64_t sent) const {
  if (options_.events_per_second <= 0) return;
  const absl::Time due =
      start + absl::Seconds(static_cast<double>(sent) / options_.events_per_second);
  const absl::Time now = absl::Now();
  if (due > now) absl::SleepFor(due - now);
}

void PublishLoad::StreamLoop(int index) {
  client::PublisherOptions po;
  po.max_buffered = options_.window;
  po.batch_size = 50;
  po.deadline = options_.call_deadline;
  client::Publisher publisher(address_, po);
  const std::string sender = absl::StrCat("stream", index);
  const absl::Time start = absl::Now();
  int64_t seq = 0;
  while (!stop_.load()) {
    const std::string id = absl::StrCat(sender, "-", seq);
    const std::string key = absl::StrCat(sender, "-k", seq % options_.keys);
    const size_t slot = ledger_->Add(id, key, sender, seq);
    publisher.PublishAsync(MakeRequest(options_.topic, id, key, options_.value_bytes),
                           [this, slot](absl::StatusOr<client::PublishResult> r) {
                             ledger_->Complete(slot, r);
                           });
    ++seq;
    Pace(start, seq);
  }
  // Every event gets its result: Close flushes (and cancels what is left
  // after the deadline, which completes those events too).
  publisher.Close().IgnoreError();
}

void PublishLoad::UnaryLoop(int index) {
  client::PublisherOptions po;
  po.deadline = options_.call_deadline;
  client::Publisher publisher(address_, po);
  const std::string sender = absl::StrCat("unary", index);
  const absl::Time start = absl::Now();
  int64_t seq = 0;
  while (!stop_.load()) {
    const std::string id = absl::StrCat(sender, "-", seq);
    const std::string key = absl::StrCat(sender, "-k", seq % options_.keys);
    const size_t slot = ledger_->Add(id, key, sender, seq);
    ledger_->Complete(slot, publisher.Publish(MakeRequest(options_.topic, id, key,
                                                          options_.value_bytes)));
    ++seq;
    Pace(start, seq);
  }
}

// ------------------------------------------------------------ GroupReader

GroupReader::GroupReader(std::string address, std::string topic, std::string group,
                         ReaderOptions options)
    : address_(std::move(address)),
      topic_(std::move(topic)),
      group_(std::move(group)),
      options_(options) {
  for (int i = 0; i < options_.members; ++i) {
    threads_.emplace_back([this, i] { MemberLoop(i); });
  }
}

GroupReader::~GroupReader() { Stop(); }

void GroupReader::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    for (client::Subscriber* s : members_) s->Stop();
  }
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void GroupReader::MemberLoop(int /*index*/) {
  while (true) {
    client::SubscriberOptions so;
    so.topics = {topic_};
    so.group = group_;
    so.start = v1::START_POSITION_EARLIEST;
    so.max_outstanding_messages = 500;
    // Slow handlers hold a worker each; enough others keep up with the load.
    so.concurrency = options_.slow_every > 0 ? 8 : 2;
    so.ack_deadline = options_.ack_deadline;
    if (options_.slow_every > 0) so.max_lease_extension = absl::ZeroDuration();
    client::Subscriber subscriber(address_, so);
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      members_.push_back(&subscriber);
    }
    absl::Status end = subscriber.Run([this](const v1::Delivery& d) {
      if (options_.slow_every > 0 && handled_.fetch_add(1) % options_.slow_every == 0) {
        absl::SleepFor(options_.slow_for);
      }
      absl::MutexLock lock(&mu_);
      ++received_[d.event().id()];
      return absl::OkStatus();
    });
    absl::MutexLock lock(&mu_);
    members_.erase(std::find(members_.begin(), members_.end(), &subscriber));
    if (stop_) return;
    ++ends_[CodeName(end.code())];
    end_messages_[CodeName(end.code())] = std::string(end.message());
    mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(200));
    if (stop_) return;
  }
}

bool GroupReader::WaitFor(const std::vector<std::string>& ids,
                          absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto all = [this, &ids]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const std::string& id : ids) {
      if (!received_.contains(id)) return false;
    }
    return true;
  };
  const absl::Time deadline = absl::Now() + timeout;
  // Not a Condition: received_ changes often and the check is long.
  while (!all()) {
    if (absl::Now() >= deadline) return false;
    mu_.Unlock();
    absl::SleepFor(absl::Milliseconds(200));
    mu_.Lock();
  }
  return true;
}

std::map<std::string, int> GroupReader::received() const {
  absl::MutexLock lock(&mu_);
  return received_;
}

std::map<std::string, int> GroupReader::stream_ends() const {
  absl::MutexLock lock(&mu_);
  return ends_;
}

std::map<std::string, std::string> GroupReader::end_messages() const {
  absl::MutexLock lock(&mu_);
  return end_messages_;
}

// ------------------------------------------------------------ ProcessFigures

ProcessFigures ProcessFigures::Of(pid_t pid) {
  ProcessFigures f;
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    std::vector<std::string> parts =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipWhitespace());
    if (parts.size() < 2) continue;
    int64_t v = 0;
    if (!absl::SimpleAtoi(parts[1], &v)) continue;
    if (parts[0] == "VmRSS:") f.rss_bytes = v * 1024;
    if (parts[0] == "Threads:") f.threads = v;
  }
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/fd"), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++f.open_fds;
  }
  return f;
}

std::string ProcessFigures::ToString() const {
  return absl::StrFormat("RSS %.1f MB, %d threads, %d fds", rss_bytes / 1e6, threads,
                         open_fds);
}

// ------------------------------------------------------------ HealthWatch

HealthWatch::HealthWatch(const std::string& address)
    : channel_(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())),
      thread_([this] { Loop(); }) {}

HealthWatch::~HealthWatch() { Stop(); }

void HealthWatch::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void HealthWatch::Loop() {
  auto stub = grpc::health::v1::Health::NewStub(channel_);
  while (true) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    grpc::health::v1::HealthCheckResponse resp;
    const grpc::Status s = stub->Check(&ctx, {}, &resp);
    const bool serving =
        s.ok() && resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
    const absl::Time now = absl::Now();
    absl::MutexLock lock(&mu_);
    ++checks_;
    serving_ = serving;
    if (serving) {
      down_since_ = absl::InfiniteFuture();
    } else {
      ++not_serving_;
      down_since_ = std::min(down_since_, now);
      longest_ = std::max(longest_, now - down_since_);
    }
    if (mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(100))) return;
  }
}

int64_t HealthWatch::not_serving() const {
  absl::MutexLock lock(&mu_);
  return not_serving_;
}

int64_t HealthWatch::checks() const {
  absl::MutexLock lock(&mu_);
  return checks_;
}

absl::Duration HealthWatch::longest_not_serving() const {
  absl::MutexLock lock(&mu_);
  return longest_;
}

bool HealthWatch::serving() const {
  absl::MutexLock lock(&mu_);
  return serving_;
}

bool HealthWatch::WaitFor(bool serving, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  const int64_t after = checks_;
  auto seen = [this, serving, after]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return checks_ > after && serving_ == serving;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&seen), timeout);
}

void HealthWatch::Reset() {
  absl::MutexLock lock(&mu_);
  checks_ = 0;
  not_serving_ = 0;
  longest_ = absl::ZeroDuration();
  down_since_ = serving_ ? absl::InfiniteFuture() : absl::Now();
}

// ------------------------------------------------------------ the check

std::string FaultReport::Line(const std::string& scenario) const {
  std::vector<std::string> errs;
  for (const auto& [code, n] : errors) errs.push_back(absl::StrCat(code, "=", n));
  return absl::StrCat(
      "FAULT ", scenario, ": sent ", sent, ", acked ", acked, " (", acked_without_offset,
      " without an offset), lost ", lost,
      ", misplaced ", misplaced, ", out of order ", out_of_order, ", duplicates ",
      duplicates, ", stored though not acked ", stored_unacked,
      ", acked but not received by the group ", not_received, ", redelivered ",
      redelivered, ", errors {", absl::StrJoin(errs, ", "), "}, longest publish stall ",
      absl::FormatDuration(absl::Trunc(longest_stall, absl::Milliseconds(10))));
}

FaultReport CheckAgainstKafka(const std::string& topic, const PublishLedger& ledger,
                              const GroupReader* reader,
                              absl::Duration receive_timeout) {
  FaultReport report;
  const std::vector<PublishLedger::Event> events = ledger.Snapshot();
  const std::vector<ConsumedRecord> records = ReadTopic(topic, absl::Seconds(60));

  // ce_id -> where it is stored (every copy).
  std::map<std::string, std::vector<std::pair<int32_t, int64_t>>> stored;
  std::map<std::pair<int32_t, int64_t>, std::string> at;
  for (const ConsumedRecord& r : records) {
    const std::string id = r.Header("ce_id").value_or("");
    stored[id].emplace_back(r.partition, r.offset);
    at[{r.partition, r.offset}] = id;
  }
  for (const auto& [id, copies] : stored) {
    report.duplicates += static_cast<int64_t>(copies.size()) - 1;
  }

  // sender + key -> the acked events' places, in the order sent.
  std::map<std::string, std::vector<const PublishLedger::Event*>> by_key;
  std::vector<std::string> acked_ids;
  std::vector<absl::Time> ack_times;
  int64_t written_though_unavailable = 0;
  for (const PublishLedger::Event& e : events) {
    ++report.sent;
    if (!e.result.has_value()) {
      ADD_FAILURE() << e.id << " never got a result";
      continue;
    }
    if (!e.result->ok()) {
      const absl::StatusCode code = e.result->code();
      ++report.errors[CodeName(code)];
      if (!DocumentedFaultCodes().contains(code)) {
        ++report.unexpected_errors;
        ADD_FAILURE() << e.id << " failed with an undocumented code: " << *e.result;
      }
      if (stored.contains(e.id)) {
        ++report.stored_unacked;
        // UNAVAILABLE promises the event was not written.
        if (code == absl::StatusCode::kUnavailable) {
          ++written_though_unavailable;
          ADD_FAILURE() << e.id << " failed UNAVAILABLE (\"not written\") but is in Kafka: "
                        << *e.result;
        }
      }
      continue;
    }
    ++report.acked;
    acked_ids.push_back(e.id);
    ack_times.push_back(e.done);
    if (e.offset < 0) {
      // Acked without an offset (see PublishResponse.offset): it must be
      // stored in the partition the ack named.
      ++report.acked_without_offset;
      auto copies = stored.find(e.id);
      if (copies == stored.end()) {
        ++report.lost;
        ADD_FAILURE() << e.id << " was acked (offset unknown) and is not in Kafka";
      } else if (copies->second.front().first != e.partition) {
        ++report.misplaced;
        ADD_FAILURE() << e.id << " was acked in partition " << e.partition
                      << " but is stored in " << copies->second.front().first;
      }
      continue;
    }
    auto it = at.find({e.partition, e.offset});
    if (it == at.end()) {
      if (!stored.contains(e.id)) {
        ++report.lost;
        ADD_FAILURE() << e.id << " was acked at " << e.partition << "/" << e.offset
                      << " and is not in Kafka";
      } else {
        ++report.misplaced;
        ADD_FAILURE() << e.id << " was acked at " << e.partition << "/" << e.offset
                      << " but is stored elsewhere";
      }
      continue;
    }
    if (it->second != e.id) {
      ++report.misplaced;
      ADD_FAILURE() << e.id << " was acked at " << e.partition << "/" << e.offset
                    << " where Kafka holds " << it->second;
      continue;
    }
    by_key[absl::StrCat(e.sender, "/", e.key)].push_back(&e);
  }
  for (auto& [key, list] : by_key) {
    std::sort(list.begin(), list.end(),
              [](const auto* a, const auto* b) { return a->seq < b->seq; });
    for (size_t i = 1; i < list.size(); ++i) {
      if (list[i]->partition != list[i - 1]->partition ||
          list[i]->offset <= list[i - 1]->offset) {
        ++report.out_of_order;
        ADD_FAILURE() << key << ": " << list[i]->id << " (" << list[i]->partition << "/"
                      << list[i]->offset << ") is stored before " << list[i - 1]->id
                      << " (" << list[i - 1]->partition << "/" << list[i - 1]->offset
                      << ")";
      }
    }
  }
  std::sort(ack_times.begin(), ack_times.end());
  for (size_t i = 1; i < ack_times.size(); ++i) {
    report.longest_stall = std::max(report.longest_stall, ack_times[i] - ack_times[i - 1]);
  }

  if (reader != nullptr) {
    reader->WaitFor(acked_ids, receive_timeout);
    const std::map<std::string, int> received = reader->received();
    for (const std::string& id : acked_ids) {
      auto it = received.find(id);
      if (it == received.end()) {
        ++report.not_received;
        if (report.not_received <= 10) {
          ADD_FAILURE() << id << " was acked but never reached the consumer group";
        }
      }
    }
    for (const auto& [id, n] : received) report.redelivered += n - 1;
  }
  EXPECT_EQ(report.lost, 0);
  EXPECT_EQ(written_though_unavailable, 0);
  EXPECT_GT(report.acked, 0) << "nothing was acked at all";
  return report;
}

}  // namespace eventbus::testing
