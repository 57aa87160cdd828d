package participant

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"

	saga "github.com/tracseq/transaction-service"
)

// The words of DTM's branch protocol. A participant answers with one of
// them in its body ({"dtm_result":"SUCCESS"}) or with the matching status
// (200, 409, 425).
const (
	DTMResultSuccess = "SUCCESS"
	DTMResultFailure = "FAILURE"
	DTMResultOngoing = "ONGOING"
)

// DTM's operations of a saga branch, in the op query parameter.
const (
	DTMOpAction     = "action"
	DTMOpCompensate = "compensate"
)

// DTMTransType is the trans_type query parameter of every call this
// service makes in DTM's protocol.
const DTMTransType = "saga"

// DTMBranchID returns DTM's branch id of the step with index i: "01" for
// the first step, "02" for the second, and so on.
func DTMBranchID(i int) string {
	if i < 9 {
		return "0" + strconv.Itoa(i+1)
	}
	return strconv.Itoa(i + 1)
}

// DTMOp returns DTM's op of a call of kind k: "action" or "compensate".
func DTMOp(k Kind) string {
	if k == KindCompensation {
		return DTMOpCompensate
	}
	return DTMOpAction
}

// dtmURL returns the URL of a DTM-protocol call: the request's URL with the
// query parameters trans_type=saga, branch_id and op set, and gid set to the
// saga id unless the URL names one already (the DTM endpoint puts the
// client's gid there).
func dtmURL(call Call) (string, error) {
	u, err := url.Parse(call.Request.URL)
	if err != nil {
		return "", err
	}
	q := u.Query()
	if q.Get("gid") == "" {
		q.Set("gid", call.SagaID.String())
	}
	q.Set("trans_type", DTMTransType)
	q.Set("branch_id", DTMBranchID(call.StepIndex))
	q.Set("op", DTMOp(call.Kind))
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// ClassifyDTM rates an answer in DTM's protocol, as DTM v1.19 reads it:
//
//   - 425 or a body holding ONGOING: not done yet, ask again later
//     (transient).
//   - 409 or a body holding FAILURE: for an action, a refusal (permanent);
//     for a compensation, transient: DTM retries a compensation until it
//     succeeds.
//   - 200 otherwise: success.
//   - any other status: transient.
//
// Every failure is uncertain, so that the branch is compensated when the
// saga rolls back: DTM calls the compensation of every branch whose action
// was called, a refused one included, and expects its participants to make
// a compensation of nothing a no-op (a barrier).
func ClassifyDTM(kind Kind, status int, body []byte) (Outcome, bool) {
	switch {
	case status == http.StatusTooEarly || bytes.Contains(body, []byte(DTMResultOngoing)):
		return OutcomeTransient, true
	case status == http.StatusConflict || bytes.Contains(body, []byte(DTMResultFailure)):
		if kind == KindCompensation {
			return OutcomeTransient, true
		}
		return OutcomePermanent, true
	case status == http.StatusOK:
		return OutcomeSuccess, false
	}
	return OutcomeTransient, true
}

// classifyAnswer rates an HTTP answer in the call's protocol.
func classifyAnswer(call Call, status int, body []byte) (Outcome, bool) {
	if call.Request.Protocol == saga.ProtocolDTM {
		return ClassifyDTM(call.Kind, status, body)
	}
	return Classify(status, nil)
}
