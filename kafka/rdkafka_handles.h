#pragma once

// One owner per librdkafka C handle: each handle type gets a unique_ptr with a
// deleter, so every handle is destroyed exactly once on every path.

#include <librdkafka/rdkafka.h>

#include <memory>

namespace eventbus::kafka {

struct RdKafkaDeleter {
  void operator()(rd_kafka_t* rk) const noexcept { rd_kafka_destroy(rk); }
};
struct RdKafkaConfDeleter {
  void operator()(rd_kafka_conf_t* conf) const noexcept {
    rd_kafka_conf_destroy(conf);
  }
};
struct RdKafkaTopicPartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* list) const noexcept {
    rd_kafka_topic_partition_list_destroy(list);
  }
};
struct RdKafkaMessageDeleter {
  void operator()(rd_kafka_message_t* msg) const noexcept {
    rd_kafka_message_destroy(msg);
  }
};
struct RdKafkaHeadersDeleter {
  void operator()(rd_kafka_headers_t* hdrs) const noexcept {
    rd_kafka_headers_destroy(hdrs);
  }
};
struct RdKafkaMetadataDeleter {
  void operator()(const rd_kafka_metadata_t* md) const noexcept {
    rd_kafka_metadata_destroy(md);
  }
};
struct RdKafkaQueueDeleter {
  void operator()(rd_kafka_queue_t* q) const noexcept {
    rd_kafka_queue_destroy(q);
  }
};
struct RdKafkaEventDeleter {
  void operator()(rd_kafka_event_t* ev) const noexcept {
    rd_kafka_event_destroy(ev);
  }
};

using RdKafkaPtr = std::unique_ptr<rd_kafka_t, RdKafkaDeleter>;
using RdKafkaConfPtr = std::unique_ptr<rd_kafka_conf_t, RdKafkaConfDeleter>;
using RdKafkaTopicPartitionListPtr =
    std::unique_ptr<rd_kafka_topic_partition_list_t,
                    RdKafkaTopicPartitionListDeleter>;
using RdKafkaMessagePtr =
    std::unique_ptr<rd_kafka_message_t, RdKafkaMessageDeleter>;
using RdKafkaHeadersPtr =
    std::unique_ptr<rd_kafka_headers_t, RdKafkaHeadersDeleter>;
using RdKafkaMetadataPtr =
    std::unique_ptr<const rd_kafka_metadata_t, RdKafkaMetadataDeleter>;
using RdKafkaQueuePtr = std::unique_ptr<rd_kafka_queue_t, RdKafkaQueueDeleter>;
using RdKafkaEventPtr = std::unique_ptr<rd_kafka_event_t, RdKafkaEventDeleter>;

}  // namespace eventbus::kafka
