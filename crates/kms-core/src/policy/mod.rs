//! The IAM policy language as AWS KMS evaluates it (being written).
