// Command subscriber is the seed scenario's notification consumer: a member
// of --group that processes each event once (the event id tells duplicates,
// which are acked and skipped), prints one JSON line per processed event and
// acks it. It exits 0 once --count distinct events were processed and acked,
// 1 on timeout or stream error.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	eventbusv1 "eventbus.dev/examples/go/gen/eventbus/v1"
)

// eventLine is the JSON line printed per event (same format in every language).
type eventLine struct {
	ID              string            `json:"id"`
	Type            string            `json:"type"`
	Source          string            `json:"source"`
	Subject         string            `json:"subject"`
	DataContentType string            `json:"data_content_type"`
	Data            string            `json:"data"`
	Extensions      map[string]string `json:"extensions"`
	Key             string            `json:"key"`
	Partition       int32             `json:"partition"`
	Offset          int64             `json:"offset"`
}

func main() { os.Exit(run()) }

func run() int {
	address := flag.String("address", "", "host:port or unix:/path of the sidecar (required)")
	topic := flag.String("topic", "", "topic to subscribe to (required)")
	group := flag.String("group", "", "consumer group (required)")
	count := flag.Int("count", 0, "distinct events to process before exiting (required)")
	timeoutSeconds := flag.Float64("timeout-seconds", 60, "give up after this many seconds")
	flag.Parse()
	if *address == "" || *topic == "" || *group == "" || *count <= 0 {
		fmt.Fprintln(os.Stderr, "subscriber: --address, --topic, --group and --count are required")
		flag.Usage()
		return 2
	}

	conn, err := grpc.NewClient(*address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "subscriber: %v\n", err)
		return 1
	}
	defer conn.Close()
	client := eventbusv1.NewEventBusClient(conn)

	// The deadline covers the whole run, so a stalled stream ends in DEADLINE_EXCEEDED.
	timeout := time.Duration(*timeoutSeconds * float64(time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stream, err := client.Subscribe(ctx)
	if err == nil {
		err = stream.Send(&eventbusv1.SubscribeRequest{Request: &eventbusv1.SubscribeRequest_Subscription{
			Subscription: &eventbusv1.Subscription{
				Topics:        []string{*topic},
				Group:         *group,
				StartPosition: eventbusv1.StartPosition_START_POSITION_EARLIEST,
			},
		}})
	}

	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	processed := map[string]bool{} // event ids already processed
	closed := false
	for err == nil {
		var resp *eventbusv1.SubscribeResponse
		if resp, err = stream.Recv(); err != nil {
			break // io.EOF: the server ended the stream with OK
		}
		for _, ae := range resp.AckErrors {
			fmt.Fprintf(os.Stderr, "subscriber: ack of delivery %d failed: %s: %s\n",
				ae.DeliveryId, codeName(codes.Code(ae.Status.GetCode())), ae.Status.GetMessage())
		}
		if closed {
			continue // after the half-close: left unacked, they go back to the group
		}
		var ready []uint64
		for _, d := range resp.Deliveries {
			if len(processed) >= *count {
				break // done: not acked, goes back to the group
			}
			if e := d.Event; !processed[e.Id] { // "process" the event
				ext := e.Extensions
				if ext == nil {
					ext = map[string]string{} // prints {} rather than null
				}
				out.Encode(eventLine{
					ID: e.Id, Type: e.Type, Source: e.Source, Subject: e.Subject,
					DataContentType: e.DataContentType, Data: string(e.Data), Extensions: ext,
					Key: d.Key, Partition: d.Partition, Offset: d.Offset,
				})
				processed[e.Id] = true
			}
			ready = append(ready, d.DeliveryId) // a duplicate is acked and skipped
		}
		if len(ready) > 0 {
			err = stream.Send(&eventbusv1.SubscribeRequest{Request: &eventbusv1.SubscribeRequest_Ack{
				Ack: &eventbusv1.Ack{DeliveryIds: ready},
			}})
			if err == io.EOF {
				err = nil // the stream has ended: the next Recv tells its status
			}
		}
		if err == nil && len(processed) >= *count {
			err = stream.CloseSend() // half-close after the final acks; wait for the stream to end
			closed = true
		}
	}

	switch {
	case err == io.EOF && closed:
		return 0 // the server ended the stream after our half-close: acks are applied
	case err == io.EOF:
		fmt.Fprintf(os.Stderr, "subscriber: stream ended after %d of %d events\n", len(processed), *count)
	case status.Code(err) == codes.DeadlineExceeded:
		fmt.Fprintf(os.Stderr, "subscriber: timed out after %gs with %d of %d events processed\n",
			*timeoutSeconds, len(processed), *count)
	default:
		st := status.Convert(err)
		fmt.Fprintf(os.Stderr, "subscriber: Subscribe failed: %s: %s\n", codeName(st.Code()), st.Message())
	}
	return 1
}

// codeName is a gRPC status code's canonical name, e.g. INVALID_ARGUMENT.
func codeName(c codes.Code) string {
	names := [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
		"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
		"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
		"UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}
	if int(c) < len(names) {
		return names[c]
	}
	return c.String()
}
