#pragma once

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "kafka/record.h"

namespace eventbus::kafka {

// Called exactly once with the outcome of one produced record.
using DeliveryCallback = absl::AnyInvocable<void(DeliveryResult) &&>;

// Writes records to Kafka. Thread-safe.
//
// The publish path depends on this interface so that the gRPC layer can be
// tested with a fake; RdKafkaProducer is the real implementation.
class Producer {
 public:
  virtual ~Producer() = default;

  // Hands `record` to Kafka.
  //
  // Returns a non-OK status when the record is refused at once (the producer
  // is shutting down, the record is too large, the topic is known not to
  // exist, the wait list is full); `done` is then destroyed without being
  // called. On OK, `done` is called exactly once, later, on a producer thread
  // and never inline from Produce: with OK and the record's partition and
  // offset once Kafka acknowledged it, or with the reason it failed. A record
  // that cannot be handed to Kafka yet (no broker reachable, queue full)
  // waits in order until `deadline`, then fails with UNAVAILABLE or
  // RESOURCE_EXHAUSTED. Records with the same key are written in the order
  // of the Produce calls that returned OK.
  //
  // `done` must be fast and must not block: it runs on the thread that serves
  // every delivery.
  virtual absl::Status Produce(Record record, absl::Time deadline,
                               DeliveryCallback done) = 0;

  // True while a Kafka broker answers requests.
  virtual bool Connected() const = 0;
};

}  // namespace eventbus::kafka
