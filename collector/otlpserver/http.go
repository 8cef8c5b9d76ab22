package otlpserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// encoding is an OTLP/HTTP body encoding.
type encoding int

const (
	encProto encoding = iota
	encJSON
)

const (
	protoContentType = "application/x-protobuf"
	jsonContentType  = "application/json"
)

func (e encoding) contentType() string {
	if e == encJSON {
		return jsonContentType
	}
	return protoContentType
}

func (e encoding) String() string {
	if e == encJSON {
		return "json"
	}
	return "protobuf"
}

// request reads and checks the method, content type and body of an
// OTLP/HTTP request; it has answered the client when ok is false.
func request(w http.ResponseWriter, r *http.Request) (enc encoding, body []byte, ok bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "405 method not allowed, supported: [POST]", http.StatusMethodNotAllowed)
		return enc, nil, false
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case protoContentType:
		enc = encProto
	case jsonContentType:
		enc = encJSON
	default:
		http.Error(w, fmt.Sprintf("415 unsupported media type %q, supported: [%s, %s]", mt, jsonContentType, protoContentType), http.StatusUnsupportedMediaType)
		return enc, nil, false
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeStatus(w, enc, http.StatusRequestEntityTooLarge, status.New(codes.InvalidArgument, fmt.Sprintf("request body larger than %d bytes", tooLarge.Limit)))
		} else {
			writeStatus(w, enc, http.StatusBadRequest, status.New(codes.InvalidArgument, "reading request body: "+err.Error()))
		}
		return enc, nil, false
	}
	return enc, body, true
}

// decodeError says what is wrong with a body that does not decode, and
// guesses the commonest mistake: a body in the other encoding.
func decodeError(enc encoding, body []byte, err error) *status.Status {
	msg := fmt.Sprintf("request body is not a valid OTLP %s export request: %v", enc, err)
	switch {
	case enc == encJSON && looksBinary(body):
		msg = "request body is not JSON (it looks like protobuf: send it with Content-Type: " + protoContentType + "): " + err.Error()
	case enc == encProto && len(bytes.TrimSpace(body)) > 0 && bytes.TrimSpace(body)[0] == '{':
		msg = "request body is not protobuf (it looks like JSON: send it with Content-Type: " + jsonContentType + "): " + err.Error()
	}
	return status.New(codes.InvalidArgument, msg)
}

// looksBinary reports whether b has control bytes or is not UTF-8, which
// no JSON document has outside strings' escapes.
func looksBinary(b []byte) bool {
	if !utf8.Valid(b) {
		return true
	}
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			return true
		}
	}
	return false
}

// exportMessage is an OTLP export request or response in either
// encoding: pmetricotlp, plogotlp and ptraceotlp share these methods.
type exportMessage interface {
	UnmarshalJSON([]byte) error
	UnmarshalProto([]byte) error
	MarshalJSON() ([]byte, error)
	MarshalProto() ([]byte, error)
}

// handleExport decodes an export request of any signal, hands it to
// export and writes the response in the request's encoding.
func handleExport[Req, Resp exportMessage](w http.ResponseWriter, r *http.Request, req Req, export func(ctx context.Context, format string, req Req) (Resp, error)) {
	enc, body, ok := request(w, r)
	if !ok {
		return
	}
	var err error
	if enc == encJSON {
		err = req.UnmarshalJSON(body)
	} else {
		err = req.UnmarshalProto(body)
	}
	if err != nil {
		writeStatus(w, enc, 0, decodeError(enc, body, err))
		return
	}
	resp, err := export(r.Context(), enc.String(), req)
	if err != nil {
		writeStatus(w, enc, 0, status.Convert(err))
		return
	}
	var out []byte
	if enc == encJSON {
		out, err = resp.MarshalJSON()
	} else {
		out, err = resp.MarshalProto()
	}
	writeBody(w, enc, out, err)
}

func (s *server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	handleExport(w, r, pmetricotlp.NewExportRequest(), func(ctx context.Context, format string, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
		return s.exportMetrics(ctx, s.obsHTTP, format, req.Metrics())
	})
}

func (s *server) handleLogs(w http.ResponseWriter, r *http.Request) {
	handleExport(w, r, plogotlp.NewExportRequest(), func(ctx context.Context, format string, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
		return s.exportLogs(ctx, s.obsHTTP, format, req.Logs())
	})
}

func (s *server) handleTraces(w http.ResponseWriter, r *http.Request) {
	handleExport(w, r, ptraceotlp.NewExportRequest(), func(ctx context.Context, format string, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
		return s.exportTraces(ctx, s.obsHTTP, format, req.Traces())
	})
}

func writeBody(w http.ResponseWriter, enc encoding, body []byte, err error) {
	if err != nil {
		writeStatus(w, enc, 0, status.New(codes.Internal, "encoding the answer: "+err.Error()))
		return
	}
	w.Header().Set("Content-Type", enc.contentType())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// maxMessage bounds the message of an error answer; decoder errors quote
// the body.
const maxMessage = 2048

// writeStatus answers with st as the OTLP specification asks: the HTTP
// status of its code (or code, when not 0), an rpc.Status body in the
// request's encoding, and Retry-After when the status carries a
// RetryInfo. The message is made valid UTF-8 first: it may quote the
// client's bytes, and a JSON answer cannot hold invalid UTF-8.
func writeStatus(w http.ResponseWriter, enc encoding, code int, st *status.Status) {
	if code == 0 {
		code = httpStatus(st.Code())
	}
	p := st.Proto()
	msg := strings.ToValidUTF8(p.GetMessage(), "\uFFFD")
	if len(msg) > maxMessage {
		msg = strings.ToValidUTF8(msg[:maxMessage], "") + "…"
	}
	p.Message = msg
	if code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests {
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				w.Header().Set("Retry-After", strconv.FormatInt(int64(ri.GetRetryDelay().AsDuration()/time.Second), 10))
			}
		}
	}
	var body []byte
	var err error
	if enc == encJSON {
		body, err = protojson.Marshal(p)
	} else {
		body, err = proto.Marshal(p)
	}
	if err != nil {
		http.Error(w, msg, code)
		return
	}
	w.Header().Set("Content-Type", enc.contentType())
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// httpStatus maps a gRPC code to the HTTP status of the OTLP
// specification: retryable failures are 503 (429 for
// ResourceExhausted), client errors 400, 401, 403.
func httpStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument, codes.FailedPrecondition:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound, codes.Unimplemented:
		return http.StatusNotFound
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange, codes.Unavailable, codes.DataLoss:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// grpcCode is the code an HTTP status has in an rpc.Status body.
func grpcCode(httpCode int) codes.Code {
	switch httpCode {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	}
	return codes.Unknown
}

// grpcCodes maps the names in "rpc error: code = Name desc = ..." back to
// codes.
var grpcCodes = func() map[string]codes.Code {
	m := map[string]codes.Code{}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		m[c.String()] = c
	}
	return m
}()

// writeFrameworkError answers errors of the framework's HTTP server
// (authentication, decompression). It hands over only a message and
// 401 for any authentication error; the aiops_auth extension's errors
// are gRPC statuses whose text names their code, which is mapped back
// here so that a credential without the ingest scope gets 403.
func writeFrameworkError(w http.ResponseWriter, r *http.Request, msg string, code int) {
	enc := encJSON
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == protoContentType {
		enc = encProto
	}
	st := status.New(grpcCode(code), msg)
	if rest, ok := strings.CutPrefix(msg, "rpc error: code = "); ok {
		if name, desc, ok := strings.Cut(rest, " desc = "); ok {
			if c, ok := grpcCodes[name]; ok {
				st, code = status.New(c, desc), httpStatus(c)
			}
		}
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="aiops"`)
	}
	writeStatus(w, enc, code, st)
}
