package rpc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/daemoneye/daemoneye/client"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Sentinels for errors.Is. A failed call returns an *Error (the service's
// answer) or a transport error; both match these where they apply, so a
// caller can write errors.Is(err, rpc.ErrUnavailable) without looking at
// codes.
var (
	// ErrNoResponders: no service subscribes to the request's topic. The
	// collector is not running or not registered yet.
	ErrNoResponders = client.ErrNoResponders
	// ErrTimeout: the call's deadline passed before a response came (status
	// TIMEOUT, category TIMEOUT, or the caller's context).
	ErrTimeout = errors.New("rpc: deadline exceeded")
	// ErrCancelled: the call or the operation was cancelled.
	ErrCancelled = errors.New("rpc: cancelled")
	// ErrUnavailable: the service cannot take requests now (starting,
	// shutting down, overloaded); retry later.
	ErrUnavailable = errors.New("rpc: service unavailable")
	// ErrInvalidArgument: the request is malformed or a parameter is
	// invalid (category VALIDATION). Do not retry it unchanged.
	ErrInvalidArgument = errors.New("rpc: invalid request")
	// ErrNotFound: the target does not exist (category NOT_FOUND).
	ErrNotFound = errors.New("rpc: not found")
	// ErrConflict: the request conflicts with the service's state
	// (category CONFLICT).
	ErrConflict = errors.New("rpc: conflict")
	// ErrPermissionDenied: the caller may not do this (category PERMISSION).
	ErrPermissionDenied = errors.New("rpc: permission denied")
	// ErrUnsupported: the service does not implement the operation or
	// speaks another major schema version (category UNSUPPORTED).
	ErrUnsupported = errors.New("rpc: unsupported")
	// ErrResourceExhausted: the service hit a limit (category
	// RESOURCE_EXHAUSTED); retry later.
	ErrResourceExhausted = errors.New("rpc: resource exhausted")
	// ErrInternal: the service failed unexpectedly (category INTERNAL, or
	// no category).
	ErrInternal = errors.New("rpc: internal error")
	// ErrCircuitOpen: recent calls to this topic failed, so the Client
	// fails this one at once instead of waiting. The error says when the
	// next call will be let through.
	ErrCircuitOpen = errors.New("rpc: circuit open")
	// ErrBadResponse: the reply is not a valid response to the request.
	ErrBadResponse = errors.New("rpc: bad response")
	// ErrServerClosed: the Server was shut down.
	ErrServerClosed = errors.New("rpc: server closed")
)

// Error codes the package itself uses in RpcError.code.
const (
	CodeDeadlineExceeded   = "deadline_exceeded"
	CodeCancelled          = "cancelled"
	CodeInternal           = "internal"
	CodeInvalidRequest     = "invalid_request"
	CodeVersionUnsupported = "version_unsupported"
	CodeUnsupported        = "operation_unsupported"
	CodeOverloaded         = "overloaded"
	CodeShuttingDown       = "shutting_down"
)

// Error is a failed RPC as the service reported it: a status other than
// SUCCESS and the RpcError detail (code, category, message, metadata,
// retry hints, typed detail). Handlers return one to control exactly what
// the caller sees; any other error a handler returns is reported as
// category INTERNAL with its text. Error matches the package's sentinels
// with errors.Is by status and category.
type Error struct {
	// Status is the response status: ERROR, TIMEOUT, CANCELLED or
	// UNAVAILABLE. Zero means ERROR.
	Status eventbusv1.RpcStatus
	// Detail is what went wrong. Never nil in an Error a Client returns.
	Detail *eventbusv1.RpcError
}

// Errorf returns an Error with status ERROR (UNAVAILABLE for the
// UNAVAILABLE category, TIMEOUT for TIMEOUT), the category, the stable
// code (lower_snake_case) and a message. Errors of categories UNAVAILABLE,
// RESOURCE_EXHAUSTED and TIMEOUT are marked retryable.
func Errorf(category eventbusv1.RpcErrorCategory, code, format string, args ...any) *Error {
	status := eventbusv1.RpcStatus_RPC_STATUS_ERROR
	retryable := false
	switch category {
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNAVAILABLE:
		status, retryable = eventbusv1.RpcStatus_RPC_STATUS_UNAVAILABLE, true
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_TIMEOUT:
		status, retryable = eventbusv1.RpcStatus_RPC_STATUS_TIMEOUT, true
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_RESOURCE_EXHAUSTED:
		retryable = true
	}
	return &Error{Status: status, Detail: &eventbusv1.RpcError{
		Code: code, Category: category, Message: fmt.Sprintf(format, args...), Retryable: retryable,
	}}
}

// InvalidArgument returns a VALIDATION Error listing the invalid fields
// (each a field path and what is wrong with it).
func InvalidArgument(code, message string, violations ...*eventbusv1.FieldViolation) *Error {
	e := Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_VALIDATION, code, "%s", message)
	if len(violations) > 0 {
		e.Detail.Detail = &eventbusv1.RpcError_FieldViolations{FieldViolations: &eventbusv1.FieldViolations{Violations: violations}}
	}
	return e
}

// NotFound returns a NOT_FOUND Error about the resource of that type and
// id.
func NotFound(code, resourceType, id string) *Error {
	e := Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_NOT_FOUND, code, "%s %q not found", resourceType, id)
	e.Detail.Detail = &eventbusv1.RpcError_Resource{Resource: &eventbusv1.ResourceInfo{ResourceType: resourceType, ResourceId: id}}
	return e
}

// WithRetryAfter marks e retryable after d and returns it.
func (e *Error) WithRetryAfter(d time.Duration) *Error {
	e.Detail.Retryable = true
	e.Detail.RetryAfter = durationpb.New(d)
	return e
}

func (e *Error) Error() string {
	d := e.Detail
	name := categoryName(d.GetCategory())
	if d.GetCategory() == eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNSPECIFIED {
		name = statusName(e.Status)
	}
	if d == nil {
		return name
	}
	return fmt.Sprintf("%s: %s (code %s)", name, d.GetMessage(), d.GetCode())
}

// Is reports whether e matches target, one of the package's sentinels,
// by category first and status second.
func (e *Error) Is(target error) bool {
	return target == e.sentinel()
}

func (e *Error) sentinel() error {
	switch e.Detail.GetCategory() {
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_VALIDATION:
		return ErrInvalidArgument
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_NOT_FOUND:
		return ErrNotFound
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_CONFLICT:
		return ErrConflict
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNAVAILABLE:
		return ErrUnavailable
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_TIMEOUT:
		return ErrTimeout
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_PERMISSION:
		return ErrPermissionDenied
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNSUPPORTED:
		return ErrUnsupported
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_RESOURCE_EXHAUSTED:
		return ErrResourceExhausted
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_INTERNAL:
		return ErrInternal
	}
	switch e.Status {
	case eventbusv1.RpcStatus_RPC_STATUS_TIMEOUT:
		return ErrTimeout
	case eventbusv1.RpcStatus_RPC_STATUS_CANCELLED:
		return ErrCancelled
	case eventbusv1.RpcStatus_RPC_STATUS_UNAVAILABLE:
		return ErrUnavailable
	}
	return ErrInternal
}

// retryable reports whether the service said the same request may succeed
// later, and after how long (0: the caller's backoff).
func (e *Error) retryable() (bool, time.Duration) {
	if e.Detail.GetRetryable() {
		return true, e.Detail.GetRetryAfter().AsDuration()
	}
	switch e.Status {
	case eventbusv1.RpcStatus_RPC_STATUS_UNAVAILABLE, eventbusv1.RpcStatus_RPC_STATUS_TIMEOUT:
		return true, 0
	}
	return false, 0
}

// toError turns what a handler returned into the Error the caller will
// see.
func toError(err error) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		if e.Detail == nil {
			e = &Error{Status: e.Status, Detail: &eventbusv1.RpcError{Code: CodeInternal, Category: eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_INTERNAL, Message: "the service failed without saying why"}}
		}
		if e.Status == eventbusv1.RpcStatus_RPC_STATUS_UNSPECIFIED || e.Status == eventbusv1.RpcStatus_RPC_STATUS_SUCCESS {
			e.Status = eventbusv1.RpcStatus_RPC_STATUS_ERROR
		}
		return e
	case errors.Is(err, context.DeadlineExceeded):
		return Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_TIMEOUT, CodeDeadlineExceeded, "the request's deadline passed while the service worked on it: %v", err)
	case errors.Is(err, context.Canceled):
		e := Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNSPECIFIED, CodeCancelled, "the service cancelled the operation: %v", err)
		e.Status = eventbusv1.RpcStatus_RPC_STATUS_CANCELLED
		return e
	}
	return Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_INTERNAL, CodeInternal, "%v", err)
}

func statusName(s eventbusv1.RpcStatus) string {
	switch s {
	case eventbusv1.RpcStatus_RPC_STATUS_SUCCESS:
		return "success"
	case eventbusv1.RpcStatus_RPC_STATUS_TIMEOUT:
		return "timeout"
	case eventbusv1.RpcStatus_RPC_STATUS_CANCELLED:
		return "cancelled"
	case eventbusv1.RpcStatus_RPC_STATUS_UNAVAILABLE:
		return "unavailable"
	}
	return "error"
}

func categoryName(c eventbusv1.RpcErrorCategory) string {
	switch c {
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_VALIDATION:
		return "invalid request"
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_NOT_FOUND:
		return "not found"
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_CONFLICT:
		return "conflict"
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNAVAILABLE:
		return "unavailable"
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_TIMEOUT:
		return "timeout"
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_PERMISSION:
		return "permission denied"
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNSUPPORTED:
		return "unsupported"
	case eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_RESOURCE_EXHAUSTED:
		return "resource exhausted"
	}
	return "internal error"
}
