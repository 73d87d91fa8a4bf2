#include "server/subscribe_reactor.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/json_text.h"
#include "kafka/group_consumer.h"
#include "server/event_codec.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "server/grpc_status.h"
#include "server/subscribe_response_writer.h"

namespace eventbus::server {

using ::eventbus::common::IsValidUtf8;
using ::eventbus::common::ToValidUtf8;

namespace {

// A SubscribeResponse carries at most this many deliveries, and stops
// growing past this many bytes, so writes stay well under a client's
// default 4 MiB receive limit (one event may still be up to the configured
// event size).
constexpr int kMaxDeliveriesPerWrite = 500;
constexpr size_t kMaxBytesPerWrite = 1 << 20;
// Ack errors waiting to be written: a client that sends bad acks while this
// many still wait (it does not read) is ended. One message's errors are
// always taken, however many (acks of a revoked partition all fail).
constexpr size_t kMaxPendingAckErrors = 10000;
constexpr absl::Duration kMinAckDeadline = absl::Seconds(1);
constexpr absl::Duration kMaxAckDeadline = absl::Minutes(10);
constexpr int kMaxDeliveryAttempts = 1000;
constexpr char kFeaturesMetadata[] = "eventbus-features";
constexpr char kFeatureModifyAckDeadline[] = "modify_ack_deadline";

// Whether `d` is an ack deadline a client may ask for.
bool AckDeadlineInRange(absl::Duration d) {
  return d >= kMinAckDeadline && d <= kMaxAckDeadline;
}

absl::Status Invalid(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat("subscription.", field, ": ", problem));
}

absl::Duration ToDuration(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

}  // namespace

absl::StatusOr<kafka::GroupConsumerOptions> ToGroupConsumerOptions(
    const v1::Subscription& s, const SubscribeOptions& options) {
  kafka::GroupConsumerOptions out;
  out.properties = options.consumer_properties;
  if (s.topics().empty()) {
    return Invalid("topics", "at least one topic is required");
  }
  for (int i = 0; i < s.topics_size(); ++i) {
    absl::Status status = ValidateTopicName(s.topics(i));
    if (!status.ok()) {
      return Invalid(absl::StrCat("topics[", i, "]"), status.message());
    }
    out.topics.push_back(s.topics(i));
  }
  if (s.group().empty()) {
    return Invalid("group", "a consumer group is required");
  }
  for (unsigned char c : s.group()) {
    if (c < 0x20 || c == 0x7f) {
      return Invalid("group", "must not contain control characters");
    }
  }
  out.group = s.group();
  switch (s.start_position()) {
    case v1::START_POSITION_LATEST:
      out.start = kafka::StartPosition::kLatest;
      break;
    case v1::START_POSITION_EARLIEST:
      out.start = kafka::StartPosition::kEarliest;
      break;
    case v1::START_POSITION_TIME:
      if (!s.has_start_time()) {
        return Invalid("start_time", "is required with START_POSITION_TIME");
      }
      out.start = kafka::StartPosition::kTime;
      out.start_time = absl::FromUnixSeconds(s.start_time().seconds()) +
                       absl::Nanoseconds(s.start_time().nanos());
      break;
    default:
      return Invalid("start_position",
                     absl::StrCat("unknown value ", s.start_position()));
  }
  auto limit = [](absl::string_view field, int64_t value, int64_t fallback,
                  int64_t cap, absl::string_view cap_key,
                  int64_t* dest) -> absl::Status {
    if (value < 0) return Invalid(field, "must not be negative");
    if (value > cap) {
      return Invalid(field, absl::StrCat(value, " is above the server's cap of ",
                                         cap, " (", cap_key, ")"));
    }
    *dest = value == 0 ? std::min(fallback, cap) : value;
    return absl::OkStatus();
  };
  absl::Status status = limit(
      "max_outstanding_messages", s.max_outstanding_messages(),
      options.default_max_outstanding_messages,
      options.max_outstanding_messages_cap,
      "subscribe.max_outstanding_messages_cap", &out.max_outstanding_messages);
  if (!status.ok()) return status;
  status = limit("max_outstanding_bytes", s.max_outstanding_bytes(),
                 options.default_max_outstanding_bytes,
                 options.max_outstanding_bytes_cap,
                 "subscribe.max_outstanding_bytes_cap",
                 &out.max_outstanding_bytes);
  if (!status.ok()) return status;
  out.ack_deadline = options.default_ack_deadline;
  if (s.has_ack_deadline()) {
    const absl::Duration d = ToDuration(s.ack_deadline());
    if (d != absl::ZeroDuration()) {
      if (!AckDeadlineInRange(d)) {
        return Invalid("ack_deadline",
                       absl::StrCat(absl::FormatDuration(d),
                                    " is outside 1s..10m"));
      }
      out.ack_deadline = d;
    }
  }
  if (s.max_delivery_attempts() < 0 ||
      s.max_delivery_attempts() > kMaxDeliveryAttempts) {
    return Invalid("max_delivery_attempts",
                   absl::StrCat(s.max_delivery_attempts(),
                                " is outside 1..1000 (0 = the default)"));
  }
  out.max_delivery_attempts = s.max_delivery_attempts() == 0
                                  ? options.default_max_delivery_attempts
                                  : s.max_delivery_attempts();
  if (!s.dead_letter_topic().empty()) {
    absl::Status topic = ValidateTopicName(s.dead_letter_topic());
    if (!topic.ok()) return Invalid("dead_letter_topic", topic.message());
  }
  out.dead_letter_topic = s.dead_letter_topic();
  out.dead_letter_suffix = options.dead_letter_suffix;
  out.retry_backoff = options.retry_backoff;
  out.retry_backoff_max = options.retry_backoff_max;
  out.dead_letter_timeout = options.dead_letter_timeout;
  out.read_ahead_bytes = options.read_ahead_bytes;
  switch (s.ordering()) {
    case v1::ORDERING_UNORDERED:
      out.ordering = kafka::Ordering::kUnordered;
      break;
    case v1::ORDERING_PER_KEY:
      out.ordering = kafka::Ordering::kPerKey;
      break;
    case v1::ORDERING_PER_PARTITION:
      out.ordering = kafka::Ordering::kPerPartition;
      break;
    default:
      return Invalid("ordering", absl::StrCat("unknown value ", s.ordering()));
  }
  return out;
}

absl::Status CheckSubscribeRequest(const v1::SubscribeRequest& request,
                                   bool subscribed) {
  if (request.request_case() == v1::SubscribeRequest::kSubscription) {
    if (subscribed) {
      return absl::InvalidArgumentError(
          "a second subscription message: a stream subscribes once, with "
          "its first message");
    }
    return absl::OkStatus();
  }
  if (!subscribed) {
    return absl::InvalidArgumentError(
        "the first message of a Subscribe stream must be a subscription");
  }
  switch (request.request_case()) {
    case v1::SubscribeRequest::kAck:
    case v1::SubscribeRequest::kDeadLetter:
      return absl::OkStatus();
    case v1::SubscribeRequest::kNack:
      if (request.nack().has_retry_delay()) {
        const absl::Duration delay = ToDuration(request.nack().retry_delay());
        if (delay < absl::ZeroDuration() || delay > absl::Hours(24)) {
          return absl::InvalidArgumentError(
              "nack.retry_delay: must be between 0 and 24h");
        }
      }
      return absl::OkStatus();
    case v1::SubscribeRequest::kModifyAckDeadline: {
      const v1::ModifyAckDeadline& m = request.modify_ack_deadline();
      const absl::Duration d = ToDuration(m.ack_deadline());
      if (!m.has_ack_deadline() || !AckDeadlineInRange(d)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "modify_ack_deadline.ack_deadline: ",
            m.has_ack_deadline() ? absl::FormatDuration(d) : "unset",
            " is outside 1s..10m"));
      }
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(
          "empty SubscribeRequest: set one of subscription, ack, nack, "
          "dead_letter or modify_ack_deadline");
  }
}

v1::Delivery ToProtoDelivery(const kafka::Delivery& delivery) {
  v1::Delivery d;
  FillDelivery(delivery, &d);
  return d;
}

void FillDelivery(const kafka::Delivery& delivery, v1::Delivery* d) {
  const kafka::InboundRecord& r = *delivery.record;
  d->set_delivery_id(delivery.id);
  d->set_topic(r.topic.data(), r.topic.size());
  d->set_partition(r.partition);
  d->set_offset(r.offset);
  if (r.key) {
    // A proto3 string must be UTF-8, or the client cannot parse the message.
    if (IsValidUtf8(*r.key)) {
      d->set_key(r.key->data(), r.key->size());
    } else {
      d->set_raw_key(r.key->data(), r.key->size());
    }
  }
  if (r.timestamp_ms >= 0) {
    d->mutable_record_time()->set_seconds(r.timestamp_ms / 1000);
    d->mutable_record_time()->set_nanos(
        static_cast<int32_t>((r.timestamp_ms % 1000) * 1000000));
  }
  d->set_attempt(delivery.attempt);
  const absl::string_view value = r.value.value_or(absl::string_view());
  if (DecodeEventInto(r.headers, value, d->mutable_event()).ok()) {
    return;
  }
  d->set_raw(true);
  d->mutable_event()->Clear();
  d->mutable_event()->set_data(value.data(), value.size());
  for (const kafka::HeaderView& h : r.headers) {
    v1::Header* out = d->add_headers();
    if (IsValidUtf8(h.name)) {
      out->set_name(h.name.data(), h.name.size());
    } else {
      out->set_name(ToValidUtf8(h.name));
    }
    out->set_value(h.value.data(), h.value.size());
    if (absl::EqualsIgnoreCase(h.name, "content-type") && IsValidUtf8(h.value)) {
      d->mutable_event()->set_data_content_type(h.value.data(), h.value.size());
    }
  }
}

// One Subscribe call: one member of the consumer group. Modeled on grpc's
// WatchReactor: a mutex guards the state, one read and one write are in
// flight at most, and the object lives until gRPC is done with it and its
// consumer is closed.
//
// Messages cross gRPC as bytes: requests are parsed here, and responses are
// written by a SubscribeResponseWriter straight from the records.
class SubscribeReactor final
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>,
      public kafka::DeliverySink {
 public:
  explicit SubscribeReactor(Subscriptions* owner) : owner_(owner) {}

  void Start() {
    StartRead(&request_bytes_);
  }

  // Ends the stream before it starts.
  void Refuse(grpc::Status status) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    FinishLocked(std::move(status));
  }

  // Ends the stream for shutdown.
  void Drain() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    FinishLocked(grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        "eventbus is shutting down; unacked deliveries will be redelivered to "
        "the group's other members, resubscribe to another instance"));
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The client closed its side: no more acks can come, so the member
      // leaves and its unacked deliveries go to the others.
      absl::MutexLock lock(&mu_);
      FinishLocked(grpc::Status::OK);
      return;
    }
    absl::Status status = Parse(request_bytes_, &request_);
    if (status.ok()) status = Handle(request_);
    absl::MutexLock lock(&mu_);
    if (!status.ok()) {
      FinishLocked(ToGrpcStatus(status));
      return;
    }
    if (!finish_called_ && !finishing_) StartRead(&request_bytes_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    write_pending_ = false;
    writing_.Clear();
    if (finishing_) {
      // Finish waited for this write (a Finish is a last write), unless a
      // cancellation finished the stream meanwhile; AckErrors that came in
      // during the write go out first.
      if (finish_called_) return;
      if (ok) WriteAckErrorsLocked();
      if (write_pending_) return;
      finish_called_ = true;
      Finish(std::move(final_status_));
      return;
    }
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED,
                                "the stream was cancelled"));
      return;
    }
    MaybeWriteLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    if (finish_called_) return;
    StopConsumerLocked();
    finish_called_ = true;
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the stream was cancelled"));
  }

  void OnDone() override {
    std::unique_ptr<kafka::Consumer> consumer;
    {
      absl::MutexLock lock(&mu_);
      consumer = std::move(consumer_);
    }
    if (consumer != nullptr) consumer->Stop();
    owner_->Done(this, std::move(consumer));
  }

  // The stream's group label and outstanding deliveries; called by
  // Subscriptions with its lock held, which keeps the consumer alive (see
  // OnDone).
  std::pair<std::string, int64_t> Outstanding() ABSL_LOCKS_EXCLUDED(mu_) {
    kafka::Consumer* consumer;
    std::string group;
    {
      absl::MutexLock lock(&mu_);
      consumer = consumer_.get();
      group = group_label_;
    }
    // Not under mu_: the consumer calls this object with its own lock held.
    return {group, consumer == nullptr ? 0 : consumer->OutstandingDeliveries()};
  }

  uint64_t FirstUnsentId() override {
    absl::MutexLock lock(&mu_);
    return pending_.empty() ? UINT64_MAX : pending_.front().id;
  }

  // kafka::DeliverySink, called on the consumer's thread. Deliveries are
  // encoded when written.
  void Deliver(std::vector<kafka::Delivery> deliveries) override {
    absl::MutexLock lock(&mu_);
    if (finish_called_ || finishing_) return;
    for (kafka::Delivery& d : deliveries) pending_.push_back(std::move(d));
    MaybeWriteLocked();
  }

  void Revoked(const std::vector<kafka::TopicPartition>& partitions) override {
    std::set<kafka::TopicPartition, kafka::TopicPartitionLess> revoked(
        partitions.begin(), partitions.end());
    absl::MutexLock lock(&mu_);
    std::erase_if(pending_, [&revoked](const kafka::Delivery& d) {
      return revoked.count(kafka::TopicPartitionRef{d.record->topic,
                                                    d.record->partition}) > 0;
    });
  }

  void Failed(absl::Status status) override {
    absl::MutexLock lock(&mu_);
    FinishLocked(ToGrpcStatus(status));
  }

 private:
  static absl::Status Parse(grpc::ByteBuffer& bytes,
                            v1::SubscribeRequest* request) {
    grpc::ProtoBufferReader reader(&bytes);
    if (!request->ParseFromZeroCopyStream(&reader)) {
      return absl::InvalidArgumentError(
          "a message of the stream is not a SubscribeRequest in Protobuf's "
          "wire format");
    }
    return absl::OkStatus();
  }

  // Applies one client message. Returns a non-OK status to end the stream.
  absl::Status Handle(const v1::SubscribeRequest& request)
      ABSL_LOCKS_EXCLUDED(mu_) {
    kafka::Consumer* consumer;
    {
      absl::MutexLock lock(&mu_);
      consumer = consumer_.get();
    }
    absl::Status valid = CheckSubscribeRequest(request, consumer != nullptr);
    if (!valid.ok()) return valid;
    std::vector<kafka::AckError> errors;
    switch (request.request_case()) {
      case v1::SubscribeRequest::kSubscription:
        return Subscribe(request.subscription());
      case v1::SubscribeRequest::kAck: {
        const auto& ids = request.ack().delivery_ids();
        errors = consumer->Ack({ids.data(), static_cast<size_t>(ids.size())});
        break;
      }
      case v1::SubscribeRequest::kNack: {
        const auto& ids = request.nack().delivery_ids();
        std::optional<absl::Duration> delay;
        if (request.nack().has_retry_delay()) {
          delay = ToDuration(request.nack().retry_delay());
        }
        errors = consumer->Nack({ids.data(), static_cast<size_t>(ids.size())},
                                delay);
        break;
      }
      case v1::SubscribeRequest::kDeadLetter: {
        const auto& ids = request.dead_letter().delivery_ids();
        errors = consumer->DeadLetter(
            {ids.data(), static_cast<size_t>(ids.size())},
            request.dead_letter().reason());
        break;
      }
      case v1::SubscribeRequest::kModifyAckDeadline: {
        const v1::ModifyAckDeadline& m = request.modify_ack_deadline();
        const auto& ids = m.delivery_ids();
        errors = consumer->Extend({ids.data(), static_cast<size_t>(ids.size())},
                                  ToDuration(m.ack_deadline()));
        break;
      }
      default:  // refused by CheckSubscribeRequest
        break;
    }
    if (errors.empty()) return absl::OkStatus();
    absl::MutexLock lock(&mu_);
    if (ack_errors_.size() >= kMaxPendingAckErrors) {
      return absl::ResourceExhaustedError(
          "too many ack errors are waiting to be read; read the stream");
    }
    for (const kafka::AckError& e : errors) {
      v1::AckError out;
      out.set_delivery_id(e.delivery_id);
      ToProtoStatus(e.status, out.mutable_status());
      ack_errors_.push_back(std::move(out));
    }
    MaybeWriteLocked();
    return absl::OkStatus();
  }

  absl::Status Subscribe(const v1::Subscription& subscription) {
    absl::StatusOr<kafka::GroupConsumerOptions> options =
        ToGroupConsumerOptions(subscription, owner_->options_);
    if (!options.ok()) return options.status();
    if (owner_->metrics_ != nullptr) {
      // Lives until this object is deleted, after its consumer closed.
      observer_ = owner_->metrics_->StreamObserver(options->group);
      options->observer = observer_.get();
      absl::MutexLock lock(&mu_);
      group_label_ = owner_->metrics_->GroupLabel(options->group);
    }
    {
      absl::MutexLock lock(&mu_);
      if (finishing_ || finish_called_) return absl::OkStatus();
    }
    absl::StatusOr<std::unique_ptr<kafka::Consumer>> consumer =
        owner_->start_consumer_(*std::move(options), this);
    if (!consumer.ok()) return consumer.status();
    absl::MutexLock lock(&mu_);
    consumer_ = *std::move(consumer);
    if (finishing_ || finish_called_) consumer_->Stop();
    return absl::OkStatus();
  }

  void StopConsumerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (consumer_ != nullptr) consumer_->Stop();
  }

  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_pending_ || finish_called_ || finishing_) return;
    if (pending_.empty() && ack_errors_.empty()) return;
    size_t bytes = 0;
    while (!pending_.empty() &&
           writer_.deliveries() < kMaxDeliveriesPerWrite &&
           (bytes < kMaxBytesPerWrite || writer_.deliveries() == 0)) {
      bytes += writer_.AddDelivery(std::move(pending_.front()));
      pending_.pop_front();
    }
    StartWriteLocked();
  }

  // Writes what writer_ holds and every pending AckError.
  void StartWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    while (!ack_errors_.empty()) {
      writer_.AddAckError(ack_errors_.front());
      ack_errors_.pop_front();
    }
    writing_ = writer_.Take();
    write_pending_ = true;
    StartWrite(&writing_);
  }

  // Ends the stream: the member leaves the group at once; the status goes
  // out after the write in flight, if any.
  // AckErrors not yet written still go out before the status: a client that
  // acked and then closed its side learns which acks did not count.
  void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finish_called_ || finishing_) return;
    StopConsumerLocked();
    pending_.clear();
    if (!write_pending_) WriteAckErrorsLocked();
    if (write_pending_) {
      finishing_ = true;
      final_status_ = std::move(status);
      return;
    }
    finish_called_ = true;
    Finish(std::move(status));
  }

  // Starts a write of the pending AckErrors alone, if there are any.
  void WriteAckErrorsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_pending_ || ack_errors_.empty()) return;
    StartWriteLocked();
  }

  Subscriptions* const owner_;
  // Target of StartRead, and the message parsed from it; touched only
  // between StartRead and OnReadDone.
  grpc::ByteBuffer request_bytes_;
  v1::SubscribeRequest request_;

  // Set when subscribing, before the consumer starts.
  std::unique_ptr<kafka::ConsumerObserver> observer_;

  absl::Mutex mu_;
  std::unique_ptr<kafka::Consumer> consumer_ ABSL_GUARDED_BY(mu_);
  std::string group_label_ ABSL_GUARDED_BY(mu_);
  // Deliveries not yet written, in order.
  std::deque<kafka::Delivery> pending_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::AckError> ack_errors_ ABSL_GUARDED_BY(mu_);
  SubscribeResponseWriter writer_ ABSL_GUARDED_BY(mu_);
  // Passed to StartWrite; lives until OnWriteDone.
  grpc::ByteBuffer writing_ ABSL_GUARDED_BY(mu_);
  bool write_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
  // Finish waits for the write in flight; then final_status_ goes out.
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);
};

Subscriptions::Subscriptions(kafka::Producer* dead_letters,
                             SubscribeOptions options,
                             SubscribeMetrics* metrics)
    : Subscriptions(
          [dead_letters](kafka::GroupConsumerOptions consumer,
                         kafka::DeliverySink* sink)
              -> absl::StatusOr<std::unique_ptr<kafka::Consumer>> {
            absl::StatusOr<std::unique_ptr<kafka::GroupConsumer>> started =
                kafka::GroupConsumer::Start(std::move(consumer), dead_letters,
                                            sink);
            if (!started.ok()) return started.status();
            return std::unique_ptr<kafka::Consumer>(*std::move(started));
          },
          std::move(options), metrics) {}

Subscriptions::Subscriptions(ConsumerFactory start_consumer,
                             SubscribeOptions options,
                             SubscribeMetrics* metrics)
    : start_consumer_(std::move(start_consumer)),
      options_(std::move(options)),
      metrics_(metrics) {
  closer_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "eb-sub-closer");
    CloserLoop();
  });
}

Subscriptions::~Subscriptions() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  closer_.join();
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>*
Subscriptions::Open(grpc::CallbackServerContext* context) {
  // Sent with the first message: what this server accepts beyond the first
  // version of the protocol (see SubscribeRequest).
  context->AddInitialMetadata(kFeaturesMetadata, kFeatureModifyAckDeadline);
  auto* stream = new SubscribeReactor(this);
  bool draining, full;
  {
    absl::MutexLock lock(&mu_);
    full = static_cast<int64_t>(streams_.size()) >= options_.max_streams;
    streams_.insert(stream);
    draining = draining_;
  }
  if (draining) {
    stream->Drain();
  } else if (full) {
    stream->Refuse(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("this sidecar already serves ", options_.max_streams,
                     " Subscribe streams (subscribe.max_streams)")));
  } else {
    stream->Start();
  }
  return stream;
}

void Subscriptions::Drain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  for (SubscribeReactor* stream : streams_) stream->Drain();
}

void Subscriptions::Done(SubscribeReactor* stream,
                         std::unique_ptr<kafka::Consumer> consumer) {
  absl::MutexLock lock(&mu_);
  streams_.erase(stream);
  // One step, so WaitClosed never sees the stream gone and its consumer
  // not yet queued.
  to_close_.emplace_back(std::move(consumer), [stream] { delete stream; });
}

bool Subscriptions::WaitClosed(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return streams_.empty() && to_close_.empty() && closing_ == 0;
  };
  return mu_.AwaitWithDeadline(absl::Condition(&done), deadline);
}

std::map<std::string, int64_t> Subscriptions::OutstandingByGroup() {
  std::map<std::string, int64_t> out;
  absl::MutexLock lock(&mu_);
  for (SubscribeReactor* stream : streams_) {
    auto [group, n] = stream->Outstanding();
    if (!group.empty()) out[group] += n;
  }
  return out;
}

void Subscriptions::CloserLoop() {
  absl::MutexLock lock(&mu_);
  while (true) {
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stop_ || !to_close_.empty();
    };
    mu_.Await(absl::Condition(&ready));
    if (to_close_.empty()) return;  // stopping, nothing left
    auto [consumer, then] = std::move(to_close_.front());
    to_close_.pop_front();
    ++closing_;
    mu_.Unlock();
    if (consumer != nullptr) consumer->Close();
    consumer.reset();
    then();
    mu_.Lock();
    --closing_;
  }
}

}  // namespace eventbus::server
