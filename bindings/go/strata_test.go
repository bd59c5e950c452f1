package strata

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var modelA, modelB string

// TestMain makes two small synthetic models (or takes them from
// STRATA_TEST_SYNTH / STRATA_TEST_SYNTH_OTHER) with the strata CLI.
func TestMain(m *testing.M) {
	modelA, modelB = os.Getenv("STRATA_TEST_SYNTH"), os.Getenv("STRATA_TEST_SYNTH_OTHER")
	if modelA == "" || modelB == "" {
		dir, err := os.MkdirTemp("", "strata-go")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		cli := os.Getenv("STRATA_CLI")
		if cli == "" {
			cli = "../../target/release/strata"
		}
		modelA, modelB = filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf")
		for i, p := range []string{modelA, modelB} {
			out, err := exec.Command(cli, "synth", "-o", p, "--layers", "3", "--embd", "64", "--heads", "4",
				"--kv-heads", "2", "--vocab", "320", "--type", "Q4_0", "--seed", string(rune('1'+i))).CombinedOutput()
			if err != nil {
				panic(string(out))
			}
		}
	}
	os.Exit(m.Run())
}

func load(t *testing.T, path string, opts *LoadOptions) *Model {
	t.Helper()
	m, err := Load(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func status(err error) Status {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return OK
}

func TestVersionAndInfo(t *testing.T) {
	if ABIVersion() != ABIHeader {
		t.Fatalf("ABI %d, header %d", ABIVersion(), ABIHeader)
	}
	m := load(t, modelA, &LoadOptions{Threads: 2})
	defer m.Close()
	info, err := m.Info()
	if err != nil || info.NLayer != 3 || info.NEmbd != 64 || !info.GivesLogits || !info.TakesTokens {
		t.Fatalf("info %+v, %v", info, err)
	}
	if arch, err := m.Meta("general.architecture"); err != nil || arch != "llama" {
		t.Fatalf("arch %q %v", arch, err)
	}
	if _, err := m.Meta("nope"); status(err) != NotFound {
		t.Fatalf("want NotFound, got %v", err)
	}
}

func TestLoadErrorsAndCancel(t *testing.T) {
	if _, err := Load("/nonexistent.gguf", nil); status(err) != IO {
		t.Fatalf("want IO, got %v", err)
	}
	if _, err := Load(modelA, &LoadOptions{LayerEnd: 99}); status(err) != InvalidArgument {
		t.Fatalf("want InvalidArgument, got %v", err)
	}
	var stages []uint32
	_, err := Load(modelA, &LoadOptions{Progress: func(s uint32, f float32) bool {
		stages = append(stages, s)
		return s < 2
	}})
	if status(err) != Cancelled || len(stages) != 2 {
		t.Fatalf("want Cancelled after 2 stages, got %v after %v", err, stages)
	}
}

func TestTokenizeAndGenerate(t *testing.T) {
	m := load(t, modelA, nil)
	defer m.Close()
	ids, err := m.Tokenize("hello world", 0)
	if err != nil {
		t.Fatal(err)
	}
	if text, _ := m.Detokenize(ids); text != "hello world" {
		t.Fatalf("round trip gave %q", text)
	}
	s, err := NewSession(m, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	greedy := GreedySamplerParams()
	var got []uint32
	c, err := s.Generate("hello", GenerateOptions{MaxTokens: 6, Sampler: &greedy, NoSpecial: true}, func(id uint32, _ string) bool {
		got = append(got, id)
		return true
	})
	if err != nil || int(c.Tokens) != len(got) {
		t.Fatalf("%v %+v %v", err, c, got)
	}
	s.Reset()
	var first []uint32
	c, err = s.Generate("hello", GenerateOptions{MaxTokens: 6, Sampler: &greedy, NoSpecial: true}, func(id uint32, _ string) bool {
		first = append(first, id)
		return len(first) < 2
	})
	if err != nil || c.StopReason != StopCallback || len(first) != 2 || first[0] != got[0] || first[1] != got[1] {
		t.Fatalf("early stop: %v %+v %v vs %v", err, c, first, got)
	}
	if err := s.Feed(nil); status(err) != EmptyInput {
		t.Fatalf("want EmptyInput, got %v", err)
	}
	if err := s.Feed([]uint32{1 << 30}); status(err) != TokenOutOfRange {
		t.Fatalf("want TokenOutOfRange, got %v", err)
	}
}

func TestPanicInCallbackIsCarriedAcross(t *testing.T) {
	m := load(t, modelA, nil)
	defer m.Close()
	s, _ := NewSession(m, 0)
	defer s.Close()
	defer func() {
		if r := recover(); r != "boom" {
			t.Fatalf("recovered %v", r)
		}
	}()
	s.Generate("hi", GenerateOptions{MaxTokens: 4}, func(uint32, string) bool { panic("boom") })
}

func TestContextFull(t *testing.T) {
	m := load(t, modelA, nil)
	defer m.Close()
	s, _ := NewSession(m, 4)
	defer s.Close()
	if err := s.Feed([]uint32{1, 2, 3, 4, 5}); status(err) != ContextFull {
		t.Fatalf("want ContextFull, got %v", err)
	}
	if p, _ := s.Position(); p != 0 {
		t.Fatalf("position %d after a failed feed", p)
	}
}

// Goroutines sharing one model give the tokens of a serial run.
func TestGoroutinesShareAModel(t *testing.T) {
	m := load(t, modelA, &LoadOptions{Threads: 1})
	defer m.Close()
	run := func(seed uint64) []uint32 {
		s, err := NewSession(m, 0)
		if err != nil {
			t.Error(err)
			return nil
		}
		defer s.Close()
		p := DefaultSamplerParams()
		p.Seed, p.Temperature = seed, 1.0
		var ids []uint32
		if _, err := s.Generate("shared model", GenerateOptions{MaxTokens: 8, Sampler: &p}, func(id uint32, _ string) bool {
			ids = append(ids, id)
			return true
		}); err != nil {
			t.Error(err)
		}
		return ids
	}
	serial := make([][]uint32, 8)
	for i := range serial {
		serial[i] = run(uint64(i))
	}
	parallel := make([][]uint32, 8)
	var wg sync.WaitGroup
	for i := range parallel {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			parallel[i] = run(uint64(i))
		}(i)
	}
	wg.Wait()
	for i := range serial {
		if len(serial[i]) == 0 || len(serial[i]) != len(parallel[i]) {
			t.Fatalf("job %d: %v vs %v", i, serial[i], parallel[i])
		}
		for k := range serial[i] {
			if serial[i][k] != parallel[i][k] {
				t.Fatalf("job %d differs: %v vs %v", i, serial[i], parallel[i])
			}
		}
	}
}

func TestTwoShardPipeline(t *testing.T) {
	whole := load(t, modelA, nil)
	defer whole.Close()
	s, _ := NewSession(whole, 0)
	defer s.Close()
	ids := []uint32{10, 20, 30}
	if err := s.Feed(ids); err != nil {
		t.Fatal(err)
	}
	want, _ := s.Logits()
	lo := load(t, modelA, &LoadOptions{LayerStart: 0, LayerEnd: 1})
	hi := load(t, modelA, &LoadOptions{LayerStart: 1, LayerEnd: 3})
	defer lo.Close()
	defer hi.Close()
	s0, err := NewShard(lo)
	if err != nil {
		t.Fatal(err)
	}
	defer s0.Close()
	s1, _ := NewShard(hi)
	defer s1.Close()
	d, _ := s0.Digest()
	frame, err := EncodeTokens(d, 5, 0, ids)
	if err != nil {
		t.Fatal(err)
	}
	mid, err := s0.Forward(frame)
	if err != nil {
		t.Fatal(err)
	}
	out, err := s1.Forward(mid)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := FrameValues(out)
	if len(got) != len(want) {
		t.Fatalf("%d logits, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("logit %d: %v vs %v", i, got[i], want[i])
		}
	}
	other := load(t, modelB, nil)
	defer other.Close()
	od, _ := other.Digest()
	wrong, _ := EncodeTokens(od, 5, 3, []uint32{1})
	if _, err := s0.Forward(wrong); status(err) != FrameWrongModel {
		t.Fatalf("want FrameWrongModel, got %v", err)
	}
	corrupt := append([]byte(nil), frame...)
	corrupt[len(corrupt)-1] ^= 1
	if _, err := s0.Forward(corrupt); status(err) != FrameChecksum {
		t.Fatalf("want FrameChecksum, got %v", err)
	}
	if _, err := FrameDigest(out); err != nil {
		t.Fatal(err)
	}
}
