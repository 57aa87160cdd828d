// Package participant calls the participant services of a saga over HTTP:
// one call per attempt of a step's action or compensation.
//
// A call carries the idempotency key and tracing headers of the saga, and a
// JSON body holding the step's input, the saga context and the outputs of
// the steps before it. Its answer is classified into one of three outcomes:
// success (2xx), transient (408, 429, 5xx, timeout, connection error: worth
// retrying) and permanent (any other status: a business refusal). A result
// also says whether the call's effect is uncertain (the participant may have
// acted although no success was seen), which decides whether a failed step
// is compensated.
//
// A request whose Protocol is saga.ProtocolDTM is called in DTM's branch
// protocol instead (ClassifyDTM; see docs/dtm.md): the payload as it is,
// gid, trans_type, branch_id and op in the query, and DTM's reading of the
// answer.
//
// The package also holds the retry arithmetic: exponential backoff with full
// jitter, and the Retry-After header.
package participant
