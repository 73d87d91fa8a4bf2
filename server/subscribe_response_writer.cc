#include "server/subscribe_response_writer.h"

#include <cstdlib>
#include <cstring>
#include <utility>

#include "common/json_text.h"
#include "google/protobuf/io/coded_stream.h"
#include "grpc/slice.h"
#include "grpcpp/support/slice.h"
#include "server/event_codec.h"
#include "server/subscribe_reactor.h"

namespace eventbus::server {
namespace {

using ::google::protobuf::io::CodedOutputStream;

constexpr uint32_t kVarint = 0;
constexpr uint32_t kLengthDelimited = 2;

size_t VarintSize(uint64_t v) { return CodedOutputStream::VarintSize64(v); }

uint8_t* WriteVarint(uint64_t v, uint8_t* p) {
  return CodedOutputStream::WriteVarint64ToArray(v, p);
}

uint8_t* WriteTag(int field, uint32_t type, uint8_t* p) {
  return WriteVarint((static_cast<uint64_t>(field) << 3) | type, p);
}

size_t TagSize(int field) {
  return VarintSize(static_cast<uint64_t>(field) << 3);
}

// Integers as Protobuf writes an int32, int64 or uint64 field: negative
// int32s sign-extended to ten bytes.
uint64_t AsVarint(int64_t v) { return static_cast<uint64_t>(v); }

// A varint field, left out when zero as proto3 does.
size_t VarintFieldSize(int field, uint64_t v) {
  return v == 0 ? 0 : TagSize(field) + VarintSize(v);
}

uint8_t* WriteVarintField(int field, uint64_t v, uint8_t* p) {
  if (v == 0) return p;
  p = WriteTag(field, kVarint, p);
  return WriteVarint(v, p);
}

// A length-delimited field of `len` bytes (a string, bytes or a message).
size_t LengthFieldSize(int field, size_t len) {
  return TagSize(field) + VarintSize(len) + len;
}

uint8_t* WriteLengthPrefix(int field, size_t len, uint8_t* p) {
  p = WriteTag(field, kLengthDelimited, p);
  return WriteVarint(len, p);
}

uint8_t* WriteBytes(absl::string_view bytes, uint8_t* p) {
  if (!bytes.empty()) std::memcpy(p, bytes.data(), bytes.size());
  return p + bytes.size();
}

// A string or bytes field, left out when empty as proto3 does.
size_t StringFieldSize(int field, absl::string_view s) {
  return s.empty() ? 0 : LengthFieldSize(field, s.size());
}

uint8_t* WriteStringField(int field, absl::string_view s, uint8_t* p) {
  if (s.empty()) return p;
  return WriteBytes(s, WriteLengthPrefix(field, s.size(), p));
}

size_t TimestampSize(int64_t seconds, int32_t nanos) {
  return VarintFieldSize(google::protobuf::Timestamp::kSecondsFieldNumber,
                         AsVarint(seconds)) +
         VarintFieldSize(google::protobuf::Timestamp::kNanosFieldNumber,
                         AsVarint(nanos));
}

// A Timestamp field; written even when zero, so that it is present.
uint8_t* WriteTimestampField(int field, int64_t seconds, int32_t nanos,
                             uint8_t* p) {
  p = WriteLengthPrefix(field, TimestampSize(seconds, nanos), p);
  p = WriteVarintField(google::protobuf::Timestamp::kSecondsFieldNumber,
                       AsVarint(seconds), p);
  return WriteVarintField(google::protobuf::Timestamp::kNanosFieldNumber,
                          AsVarint(nanos), p);
}

size_t MapEntrySize(absl::string_view key, absl::string_view value) {
  return LengthFieldSize(1, key.size()) + LengthFieldSize(2, value.size());
}

struct RecordTime {
  int64_t seconds;
  int32_t nanos;
};

RecordTime ToRecordTime(int64_t timestamp_ms) {
  return {timestamp_ms / 1000,
          static_cast<int32_t>((timestamp_ms % 1000) * 1000000)};
}

}  // namespace

// Collects what ReadBinaryEvent reports as fields of the writer's list.
class SubscribeResponseWriter::FieldCollector final : public BinaryEventSink {
 public:
  explicit FieldCollector(std::vector<Field>* fields) : fields_(fields) {}
  void Attribute(int field_number, absl::string_view value) override {
    fields_->push_back({.number = field_number, .value = value});
  }
  // Only the last time is kept: on the wire a later occurrence of a
  // message field merges into the earlier one instead of replacing it.
  void Time(int64_t seconds, int32_t nanos) override {
    const Field time{.number = v1::Event::kTimeFieldNumber,
                     .seconds = seconds,
                     .nanos = nanos};
    if (time_index_ < fields_->size()) {
      (*fields_)[time_index_] = time;
      return;
    }
    time_index_ = fields_->size();
    fields_->push_back(time);
  }
  void Extension(absl::string_view name, absl::string_view value) override {
    fields_->push_back({.number = v1::Event::kExtensionsFieldNumber,
                        .name = name,
                        .value = value});
  }

 private:
  std::vector<Field>* const fields_;
  size_t time_index_ = SIZE_MAX;
};

size_t SubscribeResponseWriter::EventFieldSize(const Field& f) {
  switch (f.number) {
    case v1::Event::kTimeFieldNumber:
      return LengthFieldSize(f.number, TimestampSize(f.seconds, f.nanos));
    case v1::Event::kExtensionsFieldNumber:
      return LengthFieldSize(f.number, MapEntrySize(f.name, f.value));
    default:
      // Written even when empty: it replaces an earlier value of the same
      // attribute, as DecodeEventInto's setter does.
      return LengthFieldSize(f.number, f.value.size());
  }
}

uint8_t* SubscribeResponseWriter::WriteEventField(const Field& f, uint8_t* p) {
  switch (f.number) {
    case v1::Event::kTimeFieldNumber:
      return WriteTimestampField(f.number, f.seconds, f.nanos, p);
    case v1::Event::kExtensionsFieldNumber:
      p = WriteLengthPrefix(f.number, MapEntrySize(f.name, f.value), p);
      p = WriteBytes(f.name, WriteLengthPrefix(1, f.name.size(), p));
      return WriteBytes(f.value, WriteLengthPrefix(2, f.value.size(), p));
    default:
      return WriteBytes(f.value, WriteLengthPrefix(f.number, f.value.size(), p));
  }
}

// Reads the record's event into fields_; returns the Event's size, or
// leaves a fallback and returns 0 when the record is not a binary-mode
// CloudEvent.
size_t SubscribeResponseWriter::PlanEvent(Item& item) {
  const kafka::InboundRecord& r = *item.delivery.record;
  item.first_field = item.end_field = fields_.size();
  const kafka::HeaderView* content_type = ContentTypeHeader(r.headers);
  if (!IsStructured(content_type)) {
    FieldCollector collector(&fields_);
    if (ReadBinaryEvent(r.headers, content_type, collector).ok()) {
      item.end_field = fields_.size();
      size_t size = StringFieldSize(v1::Event::kDataFieldNumber,
                                    r.value.value_or(absl::string_view()));
      for (size_t i = item.first_field; i < item.end_field; ++i) {
        size += EventFieldSize(fields_[i]);
      }
      return size;
    }
    fields_.resize(item.first_field);
  }
  v1::Delivery d;
  FillDelivery(item.delivery, &d);
  d.SerializeToString(&item.fallback);
  item.uses_fallback = true;
  return 0;
}

size_t SubscribeResponseWriter::AddDelivery(kafka::Delivery delivery) {
  Item& item = items_.emplace_back();
  item.delivery = std::move(delivery);
  item.event_size = PlanEvent(item);
  if (item.uses_fallback) {
    item.body_size = item.fallback.size();
  } else {
    const kafka::Delivery& d = item.delivery;
    const kafka::InboundRecord& r = *d.record;
    size_t size = VarintFieldSize(v1::Delivery::kDeliveryIdFieldNumber, d.id) +
                  LengthFieldSize(v1::Delivery::kEventFieldNumber,
                                  item.event_size) +
                  StringFieldSize(v1::Delivery::kTopicFieldNumber, r.topic) +
                  VarintFieldSize(v1::Delivery::kPartitionFieldNumber,
                                  AsVarint(r.partition)) +
                  VarintFieldSize(v1::Delivery::kOffsetFieldNumber,
                                  AsVarint(r.offset)) +
                  VarintFieldSize(v1::Delivery::kAttemptFieldNumber,
                                  AsVarint(d.attempt));
    if (r.key) {
      if (!common::IsValidUtf8(*r.key)) {
        item.key_field = v1::Delivery::kRawKeyFieldNumber;
      }
      size += StringFieldSize(item.key_field, *r.key);
    }
    if (r.timestamp_ms >= 0) {
      const RecordTime t = ToRecordTime(r.timestamp_ms);
      size += LengthFieldSize(v1::Delivery::kRecordTimeFieldNumber,
                              TimestampSize(t.seconds, t.nanos));
    }
    item.body_size = size;
  }
  const size_t added = LengthFieldSize(
      v1::SubscribeResponse::kDeliveriesFieldNumber, item.body_size);
  size_ += added;
  return added;
}

void SubscribeResponseWriter::AddAckError(const v1::AckError& error) {
  const size_t before = ack_errors_.size();
  const std::string body = error.SerializeAsString();
  ack_errors_.resize(before + LengthFieldSize(
                                  v1::SubscribeResponse::kAckErrorsFieldNumber,
                                  body.size()));
  auto* p = reinterpret_cast<uint8_t*>(ack_errors_.data() + before);
  WriteBytes(body, WriteLengthPrefix(
                       v1::SubscribeResponse::kAckErrorsFieldNumber,
                       body.size(), p));
}

uint8_t* SubscribeResponseWriter::WriteDelivery(const Item& item,
                                                uint8_t* p) const {
  p = WriteLengthPrefix(v1::SubscribeResponse::kDeliveriesFieldNumber,
                        item.body_size, p);
  if (item.uses_fallback) return WriteBytes(item.fallback, p);
  const kafka::Delivery& d = item.delivery;
  const kafka::InboundRecord& r = *d.record;
  p = WriteVarintField(v1::Delivery::kDeliveryIdFieldNumber, d.id, p);
  p = WriteLengthPrefix(v1::Delivery::kEventFieldNumber, item.event_size, p);
  for (size_t i = item.first_field; i < item.end_field; ++i) {
    p = WriteEventField(fields_[i], p);
  }
  p = WriteStringField(v1::Event::kDataFieldNumber,
                       r.value.value_or(absl::string_view()), p);
  p = WriteStringField(v1::Delivery::kTopicFieldNumber, r.topic, p);
  p = WriteVarintField(v1::Delivery::kPartitionFieldNumber,
                       AsVarint(r.partition), p);
  p = WriteVarintField(v1::Delivery::kOffsetFieldNumber, AsVarint(r.offset),
                       p);
  if (r.key) p = WriteStringField(item.key_field, *r.key, p);
  if (r.timestamp_ms >= 0) {
    const RecordTime t = ToRecordTime(r.timestamp_ms);
    p = WriteTimestampField(v1::Delivery::kRecordTimeFieldNumber, t.seconds,
                            t.nanos, p);
  }
  return WriteVarintField(v1::Delivery::kAttemptFieldNumber,
                          AsVarint(d.attempt), p);
}

grpc::ByteBuffer SubscribeResponseWriter::Take() {
  const size_t total = size_ + ack_errors_.size();
  grpc::Slice slice(grpc_slice_malloc(total), grpc::Slice::STEAL_REF);
  // The slice is new and only referenced here.
  auto* const begin = const_cast<uint8_t*>(slice.begin());
  uint8_t* p = begin;
  for (const Item& item : items_) p = WriteDelivery(item, p);
  p = WriteBytes(ack_errors_, p);
  // The sizes planned and the bytes written come from the same rules; a
  // difference is a bug that has already written past the slice.
  if (p != begin + total) std::abort();
  items_.clear();
  fields_.clear();
  ack_errors_.clear();
  size_ = 0;
  return grpc::ByteBuffer(&slice, 1);
}

}  // namespace eventbus::server
