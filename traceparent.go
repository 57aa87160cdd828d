package saga

// MaxTraceParentLength bounds Definition.TraceParent: a W3C traceparent of
// version 00 is 55 characters; later versions may append fields.
const MaxTraceParentLength = 256

// ValidTraceParent reports whether s is a W3C Trace Context traceparent
// header value ("00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>",
// https://www.w3.org/TR/trace-context/#traceparent-header): lowercase hex,
// ids not all zeros, version not ff; a version other than 00 may carry
// further fields after a "-".
func ValidTraceParent(s string) bool {
	if len(s) < 55 || len(s) > MaxTraceParentLength {
		return false
	}
	if !lowerHex(s[0:2]) || s[0:2] == "ff" || s[2] != '-' || !lowerHex(s[3:35]) || s[35] != '-' ||
		!lowerHex(s[36:52]) || s[52] != '-' || !lowerHex(s[53:55]) {
		return false
	}
	if allZeros(s[3:35]) || allZeros(s[36:52]) {
		return false
	}
	if len(s) > 55 {
		return s[0:2] != "00" && s[55] == '-'
	}
	return true
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func allZeros(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}
