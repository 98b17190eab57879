//! Condition keys taken from a request's parameters (`kms:EncryptionContext:*`,
//! `kms:EncryptionAlgorithm`, `aws:RequestTag/*`, `kms:GrantOperations`, ...).

use serde_json::Value;

use crate::policy::ConditionContext;

fn set_str(c: &mut ConditionContext, key: &str, v: &Value) {
    if let Some(s) = v.as_str() {
        c.set(key, s.to_owned());
    }
}

fn set_context(c: &mut ConditionContext, ctx: &Value) {
    if let Some(m) = ctx.as_object() {
        for (k, v) in m {
            if let Some(s) = v.as_str() {
                c.set(&format!("kms:EncryptionContext:{k}"), s.to_owned());
            }
        }
        c.set_many("kms:EncryptionContextKeys", m.keys().cloned().collect());
    }
}

/// The request's condition values for `action` (ReEncrypt's source and destination halves see
/// their own encryption context and algorithm).
pub(crate) fn request_conditions(action: &str, body: &Value) -> ConditionContext {
    let mut c = ConditionContext::new();
    match action {
        "kms:ReEncryptFrom" => {
            set_context(&mut c, &body["SourceEncryptionContext"]);
            set_str(
                &mut c,
                "kms:EncryptionAlgorithm",
                &body["SourceEncryptionAlgorithm"],
            );
        }
        "kms:ReEncryptTo" => {
            set_context(&mut c, &body["DestinationEncryptionContext"]);
            set_str(
                &mut c,
                "kms:EncryptionAlgorithm",
                &body["DestinationEncryptionAlgorithm"],
            );
        }
        _ => {
            set_context(&mut c, &body["EncryptionContext"]);
            set_str(
                &mut c,
                "kms:EncryptionAlgorithm",
                &body["EncryptionAlgorithm"],
            );
        }
    }
    set_str(&mut c, "kms:SigningAlgorithm", &body["SigningAlgorithm"]);
    set_str(&mut c, "kms:MacAlgorithm", &body["MacAlgorithm"]);
    set_str(
        &mut c,
        "kms:KeyAgreementAlgorithm",
        &body["KeyAgreementAlgorithm"],
    );
    set_str(&mut c, "kms:MessageType", &body["MessageType"]);
    // ReplicateKey's target Region and UpdatePrimaryRegion's new primary Region.
    set_str(&mut c, "kms:ReplicaRegion", &body["ReplicaRegion"]);
    set_str(&mut c, "kms:PrimaryRegion", &body["PrimaryRegion"]);
    set_str(&mut c, "kms:DataKeyPairSpec", &body["KeyPairSpec"]);
    set_str(&mut c, "kms:GranteePrincipal", &body["GranteePrincipal"]);
    set_str(&mut c, "kms:RetiringPrincipal", &body["RetiringPrincipal"]);
    if let Some(ops) = body["Operations"].as_array() {
        c.set_many(
            "kms:GrantOperations",
            ops.iter()
                .filter_map(|o| o.as_str().map(str::to_owned))
                .collect(),
        );
    }
    if let Some(constraints) = body["Constraints"].as_object() {
        c.set_many(
            "kms:GrantConstraintType",
            constraints.keys().cloned().collect(),
        );
    }
    if action == "kms:EnableKeyRotation" {
        // The period the request sets (AWS fills in the default when it is omitted).
        let days = body["RotationPeriodInDays"].as_i64().unwrap_or(365);
        c.set("kms:RotationPeriodInDays", days.to_string());
    }
    if let Some(b) = body["BypassPolicyLockoutSafetyCheck"].as_bool() {
        c.set("kms:BypassPolicyLockoutSafetyCheck", b.to_string());
    }
    if let Some(tags) = body["Tags"].as_array() {
        let mut keys = Vec::new();
        for t in tags {
            if let (Some(k), Some(v)) = (t["TagKey"].as_str(), t["TagValue"].as_str()) {
                c.set(&format!("aws:RequestTag/{k}"), v.to_owned());
                keys.push(k.to_owned());
            }
        }
        c.set_many("aws:TagKeys", keys);
    }
    if let Some(keys) = body["TagKeys"].as_array() {
        c.set_many(
            "aws:TagKeys",
            keys.iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect(),
        );
    }
    // CreateKey: the key being created.
    if action == "kms:CreateKey" {
        c.set(
            "kms:KeySpec",
            body["KeySpec"]
                .as_str()
                .or(body["CustomerMasterKeySpec"].as_str())
                .unwrap_or("SYMMETRIC_DEFAULT")
                .to_owned(),
        );
        c.set(
            "kms:KeyUsage",
            body["KeyUsage"]
                .as_str()
                .unwrap_or("ENCRYPT_DECRYPT")
                .to_owned(),
        );
        c.set(
            "kms:KeyOrigin",
            body["Origin"].as_str().unwrap_or("AWS_KMS").to_owned(),
        );
        c.set(
            "kms:MultiRegion",
            body["MultiRegion"].as_bool().unwrap_or(false).to_string(),
        );
    }
    for field in ["KeyId", "SourceKeyId", "DestinationKeyId", "TargetKeyId"] {
        if let Some(id) = body[field].as_str() {
            if id.starts_with("alias/") || id.contains(":alias/") {
                c.set(
                    "kms:RequestAlias",
                    id.rsplit(':').next().unwrap_or(id).to_owned(),
                );
            }
        }
    }
    c
}
