#include "kafka/record.h"

namespace eventbus::kafka {

size_t Record::PayloadBytes() const {
  size_t n = value.size() + (key ? key->size() : 0);
  for (const Header& h : headers) n += h.name.size() + h.value.size();
  return n;
}

}  // namespace eventbus::kafka
