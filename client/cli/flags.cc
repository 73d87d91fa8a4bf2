#include "client/cli/flags.h"

#include <optional>

#include "absl/strings/str_cat.h"

namespace eventbus::cli {

const std::vector<std::string>& ParsedFlags::GetAll(
    const std::string& name) const {
  static const std::vector<std::string>* const kNone =
      new std::vector<std::string>();
  auto it = values.find(name);
  return it == values.end() ? *kNone : it->second;
}

absl::StatusOr<ParsedFlags> ParseFlags(
    const std::vector<std::string>& args,
    const std::map<std::string, FlagSpec>& specs, size_t max_positional) {
  ParsedFlags out;
  bool flags_ended = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const bool is_flag = !flags_ended && arg.rfind("--", 0) == 0;
    if (is_flag && arg.size() == 2 && max_positional > 0) {
      flags_ended = true;
      continue;
    }
    if (!is_flag || arg.size() == 2) {
      if (out.positional.size() >= max_positional) {
        return absl::InvalidArgumentError(
            absl::StrCat("unexpected argument '", arg, "'"));
      }
      out.positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    auto spec = specs.find(name);
    if (spec == specs.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (spec->second.takes_value) {
      if (!value.has_value()) {
        if (i + 1 >= args.size()) {
          return absl::InvalidArgumentError(
              absl::StrCat("flag --", name, " needs a value"));
        }
        value = args[++i];
      }
    } else if (value.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", name, " takes no value"));
    }
    if (!spec->second.repeatable && out.Has(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", name, " was given twice"));
    }
    out.values[name].push_back(value.value_or(""));
  }
  return out;
}

absl::Status Require(const ParsedFlags& flags,
                     std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (!flags.Has(name) || flags.Get(name).empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", name, " is required"));
    }
  }
  return absl::OkStatus();
}

int UsageError(std::ostream& err, absl::string_view command,
               absl::string_view help_command, absl::string_view message) {
  err << "eventbus " << command << ": " << message << "\nRun 'eventbus "
      << help_command << " --help' for usage.\n";
  err.flush();
  return kExitUsage;
}

}  // namespace eventbus::cli
