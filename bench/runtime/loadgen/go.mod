module modelreg.dev/bench/loadgen

go 1.22
