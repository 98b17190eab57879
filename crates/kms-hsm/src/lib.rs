//! PKCS#11 HSM tokens (being written).
