package saga_test

import (
	"testing"

	saga "github.com/tracseq/transaction-service"
)

func TestCanTransition(t *testing.T) {
	t.Parallel()
	const (
		Cr = saga.SagaStatusCreated
		Ex = saga.SagaStatusExecuting
		Cg = saga.SagaStatusCompensating
		Co = saga.SagaStatusCompleted
		Cd = saga.SagaStatusCompensated
		Fa = saga.SagaStatusFailed
		Pa = saga.SagaStatusPaused
		Ca = saga.SagaStatusCancelled
		TO = saga.SagaStatusTimedOut
	)
	allowed := map[[2]saga.SagaStatus]bool{
		{Cr, Ex}: true, {Cr, Pa}: true, {Cr, Ca}: true, {Cr, TO}: true,
		{Ex, Co}: true, {Ex, Cg}: true, {Ex, Pa}: true, {Ex, Cd}: true, {Ex, Ca}: true, {Ex, TO}: true,
		{Cg, Cd}: true, {Cg, Ca}: true, {Cg, TO}: true, {Cg, Fa}: true,
		{Pa, Ex}: true, {Pa, Cg}: true, {Pa, Ca}: true, {Pa, TO}: true,
		{Fa, Cg}: true,
	}
	// Every (from, to) pair of the nine statuses, 81 cases.
	for _, from := range saga.SagaStatuses {
		for _, to := range saga.SagaStatuses {
			want := allowed[[2]saga.SagaStatus{from, to}]
			if got := saga.CanTransition(from, to); got != want {
				t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
	}
	// Terminal states allow nothing but an operator retry of Failed.
	for _, from := range saga.SagaStatuses {
		if !from.Terminal() {
			continue
		}
		for _, to := range saga.SagaStatuses {
			if saga.CanTransition(from, to) && !(from == Fa && to == Cg) {
				t.Errorf("terminal %s may move to %s", from, to)
			}
		}
	}
	if saga.CanTransition("Bogus", Ex) || saga.CanTransition(Ex, "Bogus") {
		t.Error("unknown statuses must not transition")
	}
}

func TestStatusSets(t *testing.T) {
	t.Parallel()
	if len(saga.SagaStatuses) != 9 {
		t.Fatalf("want 9 saga statuses, got %d", len(saga.SagaStatuses))
	}
	if len(saga.StepStatuses) != 6 {
		t.Fatalf("want 6 step statuses, got %d", len(saga.StepStatuses))
	}
	for _, s := range saga.SagaStatuses {
		if !s.Valid() {
			t.Errorf("%s not valid", s)
		}
		if got, err := saga.ParseSagaStatus(string(s)); err != nil || got != s {
			t.Errorf("ParseSagaStatus(%s) = %v, %v", s, got, err)
		}
	}
	for _, s := range saga.StepStatuses {
		if !s.Valid() {
			t.Errorf("%s not valid", s)
		}
	}
	if _, err := saga.ParseSagaStatus("completed"); err == nil {
		t.Error("status names are case-sensitive")
	}
}

func TestControlAllowedIn(t *testing.T) {
	t.Parallel()
	tests := []struct {
		action saga.ControlAction
		want   []saga.SagaStatus
	}{
		{saga.ControlPause, []saga.SagaStatus{saga.SagaStatusCreated, saga.SagaStatusExecuting}},
		{saga.ControlResume, []saga.SagaStatus{saga.SagaStatusPaused}},
		{saga.ControlCancel, []saga.SagaStatus{saga.SagaStatusCreated, saga.SagaStatusExecuting, saga.SagaStatusPaused}},
		{saga.ControlRetry, []saga.SagaStatus{saga.SagaStatusFailed}},
	}
	for _, tt := range tests {
		got := tt.action.AllowedStatuses()
		if len(got) != len(tt.want) {
			t.Errorf("%s allowed in %v, want %v", tt.action, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s allowed in %v, want %v", tt.action, got, tt.want)
			}
		}
	}
}

func TestIDRoundTrip(t *testing.T) {
	t.Parallel()
	prev := saga.NewID()
	for range 1000 {
		id := saga.NewID()
		if id.String() <= prev.String() {
			t.Fatalf("ids not increasing: %s then %s", prev, id)
		}
		if id[6]>>4 != 7 {
			t.Fatalf("not version 7: %s", id)
		}
		parsed, err := saga.ParseID(id.String())
		if err != nil || parsed != id {
			t.Fatalf("ParseID(%s) = %s, %v", id, parsed, err)
		}
		prev = id
	}
	for _, bad := range []string{"", "not-a-uuid", "0190f1c2-7a3b-7c4d-8e5f-0123456789aZ", "0190f1c27a3b7c4d8e5f0123456789ab1234"} {
		if _, err := saga.ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
}
