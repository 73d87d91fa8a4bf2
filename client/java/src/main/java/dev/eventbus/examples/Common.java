package dev.eventbus.examples;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import dev.eventbus.v1.Event;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.logging.Level;
import java.util.logging.Logger;

/** Helpers shared by {@link Publisher} and {@link Subscriber}. */
final class Common {
  private static final Gson GSON = new GsonBuilder().disableHtmlEscaping().create();
  // Netty warns that Unix domain sockets have no SO_KEEPALIVE; harmless. Kept
  // in a field so the level setting is not garbage-collected.
  private static final Logger NETTY_BOOTSTRAP_LOG =
      Logger.getLogger("io.grpc.netty.shaded.io.netty.bootstrap");

  private Common() {}

  /**
   * A plaintext channel to the sidecar. address is "host:port" or "unix:/path"
   * (grpc-netty-shaded connects to Unix domain sockets on Linux).
   */
  static ManagedChannel channel(String address) {
    if (address.startsWith("unix:")) {
      NETTY_BOOTSTRAP_LOG.setLevel(Level.SEVERE);
    }
    return Grpc.newChannelBuilder(address, InsecureChannelCredentials.create()).build();
  }

  static void close(ManagedChannel channel) {
    channel.shutdownNow();
    try {
      channel.awaitTermination(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /**
   * One JSON line, the same fields in the same order in every language; data
   * is the payload decoded as UTF-8, extensions sorted by name.
   */
  static String eventLine(Event event, String key, int partition, long offset) {
    JsonObject o = new JsonObject();
    o.addProperty("id", event.getId());
    o.addProperty("type", event.getType());
    o.addProperty("source", event.getSource());
    o.addProperty("subject", event.getSubject());
    o.addProperty("data_content_type", event.getDataContentType());
    o.addProperty("data", event.getData().toString(StandardCharsets.UTF_8));
    JsonObject ext = new JsonObject();
    new TreeMap<>(event.getExtensionsMap()).forEach(ext::addProperty);
    o.add("extensions", ext);
    o.addProperty("key", key);
    o.addProperty("partition", partition);
    o.addProperty("offset", offset);
    return GSON.toJson(o);
  }

  /** "UNAVAILABLE: description (cause)" for a call's gRPC status. */
  static String describe(Status status) {
    String text = status.getCode() + ": " + status.getDescription();
    Throwable cause = status.getCause();
    return cause == null ? text : text + " (" + cause + ")";
  }

  /** "UNAVAILABLE: message" for an eventbus.v1.Status code and message. */
  static String describe(int code, String message) {
    return Status.fromCodeValue(code).getCode() + ": " + message;
  }

  /**
   * Parses --name value / --name=value flags. spec maps each flag to its
   * default; a null default marks a required flag. Exits 2 on bad usage.
   */
  static Map<String, String> parseArgs(String[] argv, Map<String, String> spec, String usage) {
    Map<String, String> out = new LinkedHashMap<>(spec);
    for (int i = 0; i < argv.length; i++) {
      String arg = argv[i];
      if (arg.equals("-h") || arg.equals("--help")) {
        System.out.println("usage: " + usage);
        System.exit(0);
      }
      if (!arg.startsWith("--")) {
        usage("unknown argument: " + arg, usage);
      }
      String name = arg.substring(2);
      String value = null;
      int eq = name.indexOf('=');
      if (eq >= 0) {
        value = name.substring(eq + 1);
        name = name.substring(0, eq);
      }
      if (!spec.containsKey(name)) {
        usage("unknown argument: " + arg, usage);
      }
      if (value == null) {
        if (i + 1 >= argv.length) {
          usage("missing value for --" + name, usage);
        }
        value = argv[++i];
      }
      out.put(name, value);
    }
    out.forEach((name, value) -> {
      if (value == null) {
        usage("--" + name + " is required", usage);
      }
    });
    return out;
  }

  static int positiveInt(Map<String, String> args, String name, String usage) {
    try {
      int n = Integer.parseInt(args.get(name));
      if (n > 0) {
        return n;
      }
    } catch (NumberFormatException e) {
      // below
    }
    usage("--" + name + " must be a positive integer, got " + args.get(name), usage);
    return 0;
  }

  private static void usage(String message, String usage) {
    System.err.println(message);
    System.err.println("usage: " + usage);
    System.exit(2);
  }
}
