#include "client/cpp/publisher.h"

#include <grpcpp/client_context.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/cpp/channel.h"
#include "client/cpp/status.h"

namespace eventbus::client {
namespace {

absl::StatusOr<PublishResult> ToResult(const v1::PublishResponse& response) {
  if (response.status().code() != 0) return FromProtoStatus(response.status());
  PublishResult result;
  result.partition = response.partition();
  result.offset = response.offset();
  result.event_id = response.event_id();
  result.topic = response.topic();
  return result;
}

// The trailing metadata of a PublishStream the sidecar drained (see the
// proto): requests without a result were not published.
constexpr char kStreamEndTrailer[] = "eventbus-stream-end";
constexpr char kStreamEndDrained[] = "drained";

absl::Status Closed() {
  return absl::FailedPreconditionError("the publisher is closed");
}

}  // namespace

// One PublishStream call, in the style of grpc's callback examples: the
// Publisher's mutex guards the state, one read and one write are in flight
// at most, and a hold keeps the call open while writes may still start from
// outside a reaction (PublishAsync, Close). The stream deletes itself in
// OnDone, after completing every event still waiting for a result.
class Publisher::Stream final
    : public grpc::ClientBidiReactor<v1::PublishBatchRequest,
                                     v1::PublishBatchResponse> {
 public:
  explicit Stream(Publisher* publisher) : p_(publisher) {}

  void StartLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(p_->mu_) {
    p_->stub_->async()->PublishStream(&context_, this);
    AddHold();
    StartRead(&response_);
    StartCall();
  }

  // `id` is the request's correlation id.
  void EnqueueLocked(uint64_t id, v1::PublishRequest request, DoneFn done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(p_->mu_) {
    waiting_.emplace(id, std::move(done));
    queue_.push_back(std::move(request));
    MaybeWriteLocked();
  }

  // Half-closes once every queued request is written; the server then
  // sends the remaining results and ends the stream with OK.
  void HalfCloseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(p_->mu_) {
    closing_ = true;
    if (p_->stream_ == this) p_->stream_ = nullptr;
    MaybeWriteLocked();
  }

  void Cancel() { context_.TryCancel(); }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&p_->mu_);
    write_pending_ = false;
    if (ok && !writing_.requests().empty()) {
      // Handed to the transport: from now on the server may have them. Ids
      // rise in the order requests are queued and written, so the last one
      // marks all sent so far.
      absl::SimpleAtoi(writing_.requests().rbegin()->correlation_id(),
                       &sent_up_to_);
    }
    writing_.Clear();
    if (!ok) MarkBrokenLocked();
    MaybeWriteLocked();
    MaybeReleaseHoldLocked();
  }

  void OnReadDone(bool ok) override {
    std::vector<std::pair<DoneFn, absl::StatusOr<PublishResult>>> completions;
    {
      absl::MutexLock lock(&p_->mu_);
      if (!ok) {
        MarkBrokenLocked();
        MaybeReleaseHoldLocked();
        return;
      }
      for (const v1::PublishResponse& r : response_.responses()) {
        uint64_t id = 0;
        auto it = absl::SimpleAtoi(r.correlation_id(), &id) ? waiting_.find(id)
                                                            : waiting_.end();
        if (it == waiting_.end()) {
          spdlog::warn("eventbus publisher: a result for unknown correlation id "
                       "'{}' was ignored",
                       r.correlation_id());
          continue;
        }
        completions.emplace_back(std::move(it->second), ToResult(r));
        waiting_.erase(it);
      }
      response_.Clear();
      StartRead(&response_);
    }
    for (auto& [done, result] : completions) done(std::move(result));
    absl::MutexLock lock(&p_->mu_);
    p_->outstanding_ -= static_cast<int64_t>(completions.size());
  }

  void OnDone(const grpc::Status& grpc_status) override {
    const absl::Status status = FromGrpcStatus(grpc_status);
    // Events never sent keep the stream's status: they were not published.
    // Events sent without a result were not published either when the
    // sidecar says it drained the stream; otherwise (a broken connection, a
    // cancellation) they may have been.
    const auto trailers = context_.GetServerTrailingMetadata();
    const auto end = trailers.find(kStreamEndTrailer);
    const bool drained =
        end != trailers.end() &&
        absl::string_view(end->second.data(), end->second.size()) ==
            kStreamEndDrained;
    const absl::Status unsent =
        status.ok() ? absl::InternalError(
                          "the PublishStream ended before this event was "
                          "sent; it was not published")
                    : status;
    const absl::Status sent =
        drained ? status
                : absl::UnknownError(absl::StrCat(
                      "the PublishStream ended (",
                      status.ok() ? "OK without a result" : status.ToString(),
                      ") after this event was sent; it may or may not have "
                      "been published, and a retry may duplicate it"));
    std::vector<std::pair<DoneFn, absl::Status>> rest;
    {
      absl::MutexLock lock(&p_->mu_);
      rest.reserve(waiting_.size());
      for (auto& [id, done] : waiting_) {
        rest.emplace_back(std::move(done), id <= sent_up_to_ ? sent : unsent);
      }
      waiting_.clear();
      queue_.clear();
    }
    for (auto& [done, each] : rest) done(each);
    Publisher* const p = p_;
    {
      absl::MutexLock lock(&p->mu_);
      p->outstanding_ -= static_cast<int64_t>(rest.size());
      p->streams_.erase(this);
      if (p->stream_ == this) p->stream_ = nullptr;
      if (closing_) p->close_status_ = status;
    }
    delete this;
    absl::MutexLock lock(&p->mu_);
    --p->open_streams_;
  }

 private:
  void MarkBrokenLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(p_->mu_) {
    broken_ = true;
    if (p_->stream_ == this) p_->stream_ = nullptr;
  }

  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(p_->mu_) {
    if (write_pending_ || broken_ || hold_released_) return;
    if (!queue_.empty()) {
      const size_t n = std::min<size_t>(
          std::max(1, p_->options_.batch_size), queue_.size());
      writing_.mutable_requests()->Reserve(static_cast<int>(n));
      for (size_t i = 0; i < n; ++i) {
        *writing_.add_requests() = std::move(queue_.front());
        queue_.pop_front();
      }
      write_pending_ = true;
      StartWrite(&writing_);
      return;
    }
    if (closing_ && !writes_done_) {
      writes_done_ = true;
      StartWritesDone();
      MaybeReleaseHoldLocked();
    }
  }

  // RemoveHold from outside a reaction schedules OnDone on another thread,
  // and inside one it cannot be the last reference: never re-entrant.
  void MaybeReleaseHoldLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(p_->mu_) {
    if (hold_released_ || !(writes_done_ || broken_)) return;
    hold_released_ = true;
    RemoveHold();
  }

  Publisher* const p_;
  grpc::ClientContext context_;
  // Target of StartRead; touched only between StartRead and OnReadDone.
  v1::PublishBatchResponse response_;
  // Passed to StartWrite; lives until OnWriteDone.
  v1::PublishBatchRequest writing_ ABSL_GUARDED_BY(p_->mu_);
  std::deque<v1::PublishRequest> queue_ ABSL_GUARDED_BY(p_->mu_);
  // Every event of this stream without a result, by correlation id.
  absl::flat_hash_map<uint64_t, DoneFn> waiting_ ABSL_GUARDED_BY(p_->mu_);
  // The correlation id of the last request a completed write handed to the
  // transport: those up to it were sent.
  uint64_t sent_up_to_ ABSL_GUARDED_BY(p_->mu_) = 0;
  bool write_pending_ ABSL_GUARDED_BY(p_->mu_) = false;
  bool closing_ ABSL_GUARDED_BY(p_->mu_) = false;
  bool writes_done_ ABSL_GUARDED_BY(p_->mu_) = false;
  bool broken_ ABSL_GUARDED_BY(p_->mu_) = false;
  bool hold_released_ ABSL_GUARDED_BY(p_->mu_) = false;
};

Publisher::Publisher(std::shared_ptr<grpc::Channel> channel,
                     PublisherOptions options)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      stub_(v1::EventBus::NewStub(channel_)) {}

Publisher::Publisher(const std::string& address, PublisherOptions options)
    : Publisher(CreateChannel(address), std::move(options)) {}

Publisher::~Publisher() { Close().IgnoreError(); }

absl::StatusOr<PublishResult> Publisher::Publish(
    const v1::PublishRequest& request) {
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return Closed();
  }
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.deadline));
  v1::PublishResponse response;
  grpc::Status status = stub_->Publish(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return ToResult(response);
}

void Publisher::PublishAsync(v1::PublishRequest request, DoneFn done) {
  {
    absl::MutexLock lock(&mu_);
    auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return closed_ || outstanding_ < std::max<int64_t>(1, options_.max_buffered);
    };
    mu_.Await(absl::Condition(&room));
    if (!closed_) {
      ++outstanding_;
      const uint64_t id = ++next_id_;
      request.set_correlation_id(absl::StrCat(id));
      CurrentStreamLocked()->EnqueueLocked(id, std::move(request), std::move(done));
      return;
    }
  }
  done(Closed());
}

std::future<absl::StatusOr<PublishResult>> Publisher::PublishAsync(
    v1::PublishRequest request) {
  auto promise =
      std::make_shared<std::promise<absl::StatusOr<PublishResult>>>();
  std::future<absl::StatusOr<PublishResult>> future = promise->get_future();
  PublishAsync(std::move(request),
               [promise](absl::StatusOr<PublishResult> result) {
                 promise->set_value(std::move(result));
               });
  return future;
}

Publisher::Stream* Publisher::CurrentStreamLocked() {
  if (stream_ == nullptr) {
    stream_ = new Stream(this);
    streams_.insert(stream_);
    ++open_streams_;
    ++streams_opened_;
    stream_->StartLocked();
  }
  return stream_;
}

absl::Status Publisher::Flush(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return outstanding_ == 0;
  };
  if (mu_.AwaitWithTimeout(absl::Condition(&idle), timeout)) {
    return absl::OkStatus();
  }
  return absl::DeadlineExceededError(
      absl::StrCat(outstanding_, " events still had no result after ",
                   absl::FormatDuration(timeout)));
}

absl::Status Publisher::Close() {
  {
    absl::MutexLock lock(&mu_);
    if (closed_) {
      auto finished = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return close_done_;
      };
      mu_.Await(absl::Condition(&finished));
      return close_result_;
    }
    closed_ = true;
  }
  absl::Status result = Flush(options_.deadline);
  absl::MutexLock lock(&mu_);
  if (!result.ok()) {
    for (Stream* s : streams_) s->Cancel();
  } else if (stream_ != nullptr) {
    stream_->HalfCloseLocked();
  }
  auto all_done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return open_streams_ == 0;
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&all_done), options_.deadline)) {
    // Every event has its result; only the server's end of the stream is
    // missing.
    for (Stream* s : streams_) s->Cancel();
    mu_.Await(absl::Condition(&all_done));
    if (result.ok()) {
      result = absl::DeadlineExceededError(absl::StrCat(
          "the sidecar did not end the stream within ",
          absl::FormatDuration(options_.deadline),
          " of the half-close; it was cancelled (every event has its result)"));
    }
  }
  if (result.ok()) result = close_status_;
  close_result_ = result;
  close_done_ = true;
  return result;
}

int64_t Publisher::outstanding() const {
  absl::MutexLock lock(&mu_);
  return outstanding_;
}

int64_t Publisher::streams_opened() const {
  absl::MutexLock lock(&mu_);
  return streams_opened_;
}

}  // namespace eventbus::client
