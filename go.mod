module github.com/tracseq/transaction-service

go 1.26
