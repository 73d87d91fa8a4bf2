#pragma once

#include <librdkafka/rdkafka.h>

#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace eventbus::kafka {

// The status of a record that librdkafka failed to deliver (or refused at
// produce time) with `err`. `topic` is named in the message.
// `possibly_persisted` is rd_kafka_message_status() ==
// RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED: such a record may be in Kafka, so
// the outcome is UNKNOWN with a message that says so, whatever `err` is.
absl::Status DeliveryErrorToStatus(rd_kafka_resp_err_t err,
                                   absl::string_view topic,
                                   bool possibly_persisted);

// True for the status DeliveryErrorToStatus gives a possibly persisted record.
bool IsPossiblyPersisted(const absl::Status& status);

}  // namespace eventbus::kafka
