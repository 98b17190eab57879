//! Table-driven tests of the policy engine.

use super::*;

const KEY: &str = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const OTHER_KEY: &str =
    "arn:aws:kms:us-west-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321";
const EU_KEY: &str = "arn:aws:kms:eu-west-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const ALIAS: &str = "arn:aws:kms:us-west-2:111122223333:alias/ExampleAlias";
const ALICE: &str = "arn:aws:iam::111122223333:user/alice";
const EXAMPLE_USER: &str = "arn:aws:iam::111122223333:user/ExampleUser";
const ROOT: &str = "arn:aws:iam::111122223333:root";
const ROLE: &str = "arn:aws:iam::111122223333:role/ExampleRole";
const SESSION: &str = "arn:aws:sts::111122223333:assumed-role/ExampleRole/s1";
const SESSION2: &str = "arn:aws:sts::111122223333:assumed-role/ExampleRole/s2";
const OTHER_SESSION: &str = "arn:aws:sts::111122223333:assumed-role/OtherRole/s1";
const BOB: &str = "arn:aws:iam::444455556666:user/bob";
const OTHER_ROOT: &str = "arn:aws:iam::444455556666:root";

/// Expected evaluation: (explicit_deny, allow_principal, allow_account, allow).
#[derive(Debug, Clone, Copy)]
struct Want(Option<&'static str>, bool, bool, bool);

const NOTHING: Want = Want(None, false, false, false);
const PRIN: Want = Want(None, true, false, false);
const ACCT: Want = Want(None, false, true, false);
const BOTH: Want = Want(None, true, true, false);
const ALLOW: Want = Want(None, false, false, true);

const fn deny(sid: &'static str) -> Want {
    Want(Some(sid), false, false, false)
}

const fn deny_and(sid: &'static str, w: Want) -> Want {
    Want(Some(sid), w.1, w.2, w.3)
}

/// One row: a policy and a request.
struct Case {
    name: &'static str,
    kind: PolicyKind,
    policy: String,
    caller: &'static str,
    action: &'static str,
    resource: &'static str,
    ctx: Vec<(&'static str, Vec<&'static str>)>,
}

impl Case {
    fn key(name: &'static str, policy: &str) -> Case {
        Case {
            name,
            kind: PolicyKind::Key,
            policy: policy.to_owned(),
            caller: ALICE,
            action: "kms:Encrypt",
            resource: KEY,
            ctx: Vec::new(),
        }
    }
    fn identity(name: &'static str, policy: &str) -> Case {
        Case {
            kind: PolicyKind::Identity,
            ..Case::key(name, policy)
        }
    }
    fn caller(mut self, arn: &'static str) -> Case {
        self.caller = arn;
        self
    }
    fn action(mut self, a: &'static str) -> Case {
        self.action = a;
        self
    }
    fn resource(mut self, r: &'static str) -> Case {
        self.resource = r;
        self
    }
    fn ctx(mut self, k: &'static str, v: &[&'static str]) -> Case {
        self.ctx.push((k, v.to_vec()));
        self
    }
    fn evaluate(&self) -> Evaluation {
        let policy = Policy::parse(&self.policy, self.kind)
            .unwrap_or_else(|e| panic!("{}: parse failed: {e}", self.name));
        let principal =
            Principal::from_arn(self.caller).unwrap_or_else(|| panic!("{}: bad caller", self.name));
        let mut context = ConditionContext::new();
        for (k, v) in &self.ctx {
            context.set_many(k, v.iter().map(|s| (*s).to_owned()).collect());
        }
        policy.evaluate(&Request {
            principal: &principal,
            action: self.action,
            resource: self.resource,
            context: &context,
        })
    }
}

fn check(rows: Vec<(Case, Want)>) {
    let mut failures = Vec::new();
    for (case, want) in &rows {
        let got = case.evaluate();
        let want = Evaluation {
            explicit_deny: want.0.map(str::to_owned),
            allow_principal: want.1,
            allow_account: want.2,
            allow: want.3,
        };
        if got != want {
            failures.push(format!("{}:\n   got  {got:?}\n   want {want:?}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The key-policy examples of the AWS KMS developer guide.

const DEFAULT_KEY_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Id": "key-default-1",
  "Statement": [
    {
      "Sid": "Enable IAM User Permissions",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
      "Action": "kms:*",
      "Resource": "*"
    }
  ]
}"#;

const SOURCE_IP_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "Enable IAM User Permissions",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
      "Action": "kms:*",
      "Resource": "*"
    },
    {
      "Sid": "Deny access from outside the corporate network",
      "Effect": "Deny",
      "Principal": "*",
      "Action": "kms:*",
      "Resource": "*",
      "Condition": {
        "NotIpAddress": {"aws:SourceIp": ["192.0.2.0/24", "203.0.113.0/24"]},
        "Bool": {"aws:ViaAWSService": "false"}
      }
    }
  ]
}"#;

const ENCRYPTION_CONTEXT_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "Allow use of the key with the ExampleApp encryption context",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::111122223333:role/ExampleRole"},
      "Action": ["kms:Encrypt", "kms:Decrypt"],
      "Resource": "*",
      "Condition": {
        "StringEquals": {"kms:EncryptionContext:AppName": "ExampleApp"}
      }
    }
  ]
}"#;

const CONTEXT_KEYS_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "Allow only Department and Project encryption context keys",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::111122223333:role/ExampleRole"},
      "Action": ["kms:GenerateDataKey*", "kms:Encrypt"],
      "Resource": "*",
      "Condition": {
        "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["Department", "Project"]}
      }
    }
  ]
}"#;

const VIA_SERVICE_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "Allow use of the key only through EC2 and RDS",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::111122223333:user/ExampleUser"},
      "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:ListGrants", "kms:DescribeKey"],
      "Resource": "*",
      "Condition": {
        "StringEquals": {"kms:ViaService": ["ec2.us-west-2.amazonaws.com", "rds.us-west-2.amazonaws.com"]}
      }
    }
  ]
}"#;

const GRANT_FOR_AWS_RESOURCE_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "Allow attachment of persistent resources",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::111122223333:user/ExampleUser"},
      "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
      "Resource": "*",
      "Condition": {"Bool": {"kms:GrantIsForAWSResource": true}}
    }
  ]
}"#;

const CALLER_ACCOUNT_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "Allow access through the account for all principals of 111122223333",
      "Effect": "Allow",
      "Principal": {"AWS": "*"},
      "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
      "Resource": "*",
      "Condition": {"StringEquals": {"kms:CallerAccount": "111122223333"}}
    }
  ]
}"#;

#[test]
fn policy_aws_kms_guide_examples() {
    const IP_DENY: &str = "Deny access from outside the corporate network";
    check(vec![
        // (1) Default key policy: delegates to IAM for the account's principals.
        (
            Case::key("default: user of the account", DEFAULT_KEY_POLICY),
            ACCT,
        ),
        (
            Case::key("default: role session of the account", DEFAULT_KEY_POLICY)
                .caller(SESSION)
                .action("kms:Decrypt"),
            ACCT,
        ),
        (
            Case::key("default: the account root itself", DEFAULT_KEY_POLICY)
                .caller(ROOT)
                .action("kms:PutKeyPolicy"),
            PRIN,
        ),
        (
            Case::key("default: user of another account", DEFAULT_KEY_POLICY).caller(BOB),
            NOTHING,
        ),
        (
            Case::key("default: root of another account", DEFAULT_KEY_POLICY).caller(OTHER_ROOT),
            NOTHING,
        ),
        (
            Case::key("default: non-kms action", DEFAULT_KEY_POLICY).action("s3:GetObject"),
            NOTHING,
        ),
        // (2) Deny from outside the corporate network.
        (
            Case::key("ip: inside first range", SOURCE_IP_POLICY)
                .ctx("aws:SourceIp", &["192.0.2.44"])
                .ctx("aws:ViaAWSService", &["false"]),
            ACCT,
        ),
        (
            Case::key("ip: inside second range", SOURCE_IP_POLICY)
                .ctx("aws:SourceIp", &["203.0.113.9"])
                .ctx("aws:ViaAWSService", &["false"]),
            ACCT,
        ),
        (
            Case::key("ip: outside", SOURCE_IP_POLICY)
                .ctx("aws:SourceIp", &["198.51.100.1"])
                .ctx("aws:ViaAWSService", &["false"]),
            deny_and(IP_DENY, ACCT),
        ),
        (
            Case::key("ip: outside, root caller", SOURCE_IP_POLICY)
                .caller(ROOT)
                .ctx("aws:SourceIp", &["198.51.100.1"])
                .ctx("aws:ViaAWSService", &["false"]),
            deny_and(IP_DENY, PRIN),
        ),
        (
            Case::key("ip: outside via AWS service", SOURCE_IP_POLICY)
                .ctx("aws:SourceIp", &["198.51.100.1"])
                .ctx("aws:ViaAWSService", &["true"]),
            ACCT,
        ),
        (
            Case::key(
                "ip: no source ip (NotIpAddress true on missing key)",
                SOURCE_IP_POLICY,
            )
            .ctx("aws:ViaAWSService", &["false"]),
            deny_and(IP_DENY, ACCT),
        ),
        (
            Case::key("ip: other account outside", SOURCE_IP_POLICY)
                .caller(BOB)
                .ctx("aws:SourceIp", &["198.51.100.1"])
                .ctx("aws:ViaAWSService", &["false"]),
            deny(IP_DENY),
        ),
        (
            Case::key("ip: IPv6 caller outside", SOURCE_IP_POLICY)
                .ctx("aws:SourceIp", &["2001:db8::1"])
                .ctx("aws:ViaAWSService", &["false"]),
            deny_and(IP_DENY, ACCT),
        ),
        // (3) Encryption context condition for a role.
        (
            Case::key(
                "ec: session with matching context",
                ENCRYPTION_CONTEXT_POLICY,
            )
            .caller(SESSION)
            .action("kms:Decrypt")
            .ctx("kms:EncryptionContext:AppName", &["ExampleApp"]),
            PRIN,
        ),
        (
            Case::key("ec: the role itself", ENCRYPTION_CONTEXT_POLICY)
                .caller(ROLE)
                .ctx("kms:EncryptionContext:AppName", &["ExampleApp"]),
            PRIN,
        ),
        (
            Case::key(
                "ec: context key prefix case-insensitive",
                ENCRYPTION_CONTEXT_POLICY,
            )
            .caller(SESSION)
            .ctx("KMS:ENCRYPTIONCONTEXT:AppName", &["ExampleApp"]),
            PRIN,
        ),
        (
            Case::key("ec: action case-insensitive", ENCRYPTION_CONTEXT_POLICY)
                .caller(SESSION)
                .action("KMS:DECRYPT")
                .ctx("kms:EncryptionContext:AppName", &["ExampleApp"]),
            PRIN,
        ),
        (
            Case::key(
                "ec: context key suffix case-sensitive",
                ENCRYPTION_CONTEXT_POLICY,
            )
            .caller(SESSION)
            .ctx("kms:EncryptionContext:appname", &["ExampleApp"]),
            NOTHING,
        ),
        (
            Case::key("ec: value case-sensitive", ENCRYPTION_CONTEXT_POLICY)
                .caller(SESSION)
                .ctx("kms:EncryptionContext:AppName", &["exampleapp"]),
            NOTHING,
        ),
        (
            Case::key("ec: other value", ENCRYPTION_CONTEXT_POLICY)
                .caller(SESSION)
                .ctx("kms:EncryptionContext:AppName", &["OtherApp"]),
            NOTHING,
        ),
        (
            Case::key("ec: no context", ENCRYPTION_CONTEXT_POLICY).caller(SESSION),
            NOTHING,
        ),
        (
            Case::key("ec: action not listed", ENCRYPTION_CONTEXT_POLICY)
                .caller(SESSION)
                .action("kms:GenerateDataKey")
                .ctx("kms:EncryptionContext:AppName", &["ExampleApp"]),
            NOTHING,
        ),
        (
            Case::key("ec: other role's session", ENCRYPTION_CONTEXT_POLICY)
                .caller(OTHER_SESSION)
                .ctx("kms:EncryptionContext:AppName", &["ExampleApp"]),
            NOTHING,
        ),
        (
            Case::key("ec: user not named", ENCRYPTION_CONTEXT_POLICY)
                .ctx("kms:EncryptionContext:AppName", &["ExampleApp"]),
            NOTHING,
        ),
        // (4) ForAllValues on the encryption context keys.
        (
            Case::key("keys: subset", CONTEXT_KEYS_POLICY)
                .caller(SESSION)
                .action("kms:GenerateDataKeyWithoutPlaintext")
                .ctx("kms:EncryptionContextKeys", &["Department"]),
            PRIN,
        ),
        (
            Case::key("keys: exactly both", CONTEXT_KEYS_POLICY)
                .caller(SESSION)
                .ctx("kms:EncryptionContextKeys", &["Project", "Department"]),
            PRIN,
        ),
        (
            Case::key("keys: an extra key", CONTEXT_KEYS_POLICY)
                .caller(SESSION)
                .ctx("kms:EncryptionContextKeys", &["Department", "Owner"]),
            NOTHING,
        ),
        (
            Case::key("keys: case-sensitive values", CONTEXT_KEYS_POLICY)
                .caller(SESSION)
                .ctx("kms:EncryptionContextKeys", &["department"]),
            NOTHING,
        ),
        (
            Case::key(
                "keys: no encryption context (empty set is true)",
                CONTEXT_KEYS_POLICY,
            )
            .caller(SESSION),
            PRIN,
        ),
        (
            Case::key("keys: present but empty", CONTEXT_KEYS_POLICY)
                .caller(SESSION)
                .ctx("kms:EncryptionContextKeys", &[]),
            PRIN,
        ),
        // (5) kms:ViaService: our callers never carry it.
        (
            Case::key("via: direct call", VIA_SERVICE_POLICY)
                .caller(EXAMPLE_USER)
                .action("kms:Decrypt"),
            NOTHING,
        ),
        (
            Case::key("via: through EC2 (hypothetical)", VIA_SERVICE_POLICY)
                .caller(EXAMPLE_USER)
                .action("kms:ReEncryptFrom")
                .ctx("kms:ViaService", &["ec2.us-west-2.amazonaws.com"]),
            PRIN,
        ),
        (
            Case::key("via: through another service", VIA_SERVICE_POLICY)
                .caller(EXAMPLE_USER)
                .ctx("kms:ViaService", &["s3.us-west-2.amazonaws.com"]),
            NOTHING,
        ),
        // (6) Grants for AWS resources.
        (
            Case::key(
                "grant: not for an AWS resource",
                GRANT_FOR_AWS_RESOURCE_POLICY,
            )
            .caller(EXAMPLE_USER)
            .action("kms:CreateGrant")
            .ctx("kms:GrantIsForAWSResource", &["false"]),
            NOTHING,
        ),
        (
            Case::key("grant: for an AWS resource", GRANT_FOR_AWS_RESOURCE_POLICY)
                .caller(EXAMPLE_USER)
                .action("kms:CreateGrant")
                .ctx("kms:GrantIsForAWSResource", &["true"]),
            PRIN,
        ),
        (
            Case::key("grant: key missing", GRANT_FOR_AWS_RESOURCE_POLICY)
                .caller(EXAMPLE_USER)
                .action("kms:ListGrants"),
            NOTHING,
        ),
        (
            Case::key("grant: action not listed", GRANT_FOR_AWS_RESOURCE_POLICY)
                .caller(EXAMPLE_USER)
                .action("kms:RetireGrant")
                .ctx("kms:GrantIsForAWSResource", &["true"]),
            NOTHING,
        ),
        // (7) Everyone, restricted by kms:CallerAccount.
        (
            Case::key("caller account: same account", CALLER_ACCOUNT_POLICY)
                .ctx("kms:CallerAccount", &["111122223333"]),
            PRIN,
        ),
        (
            Case::key("caller account: session", CALLER_ACCOUNT_POLICY)
                .caller(SESSION)
                .action("kms:GenerateDataKeyPair")
                .ctx("kms:CallerAccount", &["111122223333"]),
            PRIN,
        ),
        (
            Case::key("caller account: other account", CALLER_ACCOUNT_POLICY)
                .caller(BOB)
                .ctx("kms:CallerAccount", &["444455556666"]),
            NOTHING,
        ),
        (
            Case::key("caller account: action not listed", CALLER_ACCOUNT_POLICY)
                .action("kms:ScheduleKeyDeletion")
                .ctx("kms:CallerAccount", &["111122223333"]),
            NOTHING,
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// Principals, actions, resources, Not* elements, Deny reporting, identity policies.

fn key_stmt(effect: &str, principal: &str, extra: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"{effect}",{principal},"Action":"kms:*","Resource":"*"{extra}}}]}}"#
    )
}

fn allow_for(principal: &str) -> String {
    key_stmt("Allow", principal, "")
}

#[test]
fn policy_principal_forms() {
    let star = allow_for(r#""Principal":"*""#);
    let aws_star = allow_for(r#""Principal":{"AWS":"*"}"#);
    let acct_id = allow_for(r#""Principal":{"AWS":"111122223333"}"#);
    let acct_list =
        allow_for(r#""Principal":{"AWS":["444455556666","arn:aws:iam::111122223333:root"]}"#);
    let user = allow_for(r#""Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"}"#);
    let role = allow_for(r#""Principal":{"AWS":"arn:aws:iam::111122223333:role/ExampleRole"}"#);
    let session =
        allow_for(r#""Principal":{"AWS":"arn:aws:sts::111122223333:assumed-role/ExampleRole/s1"}"#);
    let mixed = allow_for(
        r#""Principal":{"AWS":["arn:aws:iam::111122223333:root","arn:aws:iam::111122223333:user/alice"]}"#,
    );
    let service = allow_for(r#""Principal":{"Service":"ec2.amazonaws.com"}"#);
    let service_and_user = allow_for(
        r#""Principal":{"Service":["ec2.amazonaws.com"],"AWS":"arn:aws:iam::111122223333:user/alice"}"#,
    );
    let deny_account = key_stmt(
        "Deny",
        r#""Sid":"NoOther","Principal":{"AWS":"444455556666"}"#,
        "",
    );
    check(vec![
        (Case::key("'*' matches a user", &star), PRIN),
        (
            Case::key("'*' matches another account", &star).caller(BOB),
            PRIN,
        ),
        (
            Case::key("AWS '*' matches a session", &aws_star).caller(SESSION),
            PRIN,
        ),
        (Case::key("account id: user → delegation", &acct_id), ACCT),
        (
            Case::key("account id: root → direct", &acct_id).caller(ROOT),
            PRIN,
        ),
        (
            Case::key("account id: other account", &acct_id).caller(BOB),
            NOTHING,
        ),
        (
            Case::key("account list: other account's user", &acct_list).caller(BOB),
            ACCT,
        ),
        (
            Case::key("account list: session", &acct_list).caller(SESSION),
            ACCT,
        ),
        (
            Case::key("account list: other root", &acct_list).caller(OTHER_ROOT),
            PRIN,
        ),
        (Case::key("user ARN: that user", &user), PRIN),
        (
            Case::key("user ARN: other user", &user).caller(EXAMPLE_USER),
            NOTHING,
        ),
        (
            Case::key("user ARN: the account root is not the user", &user).caller(ROOT),
            NOTHING,
        ),
        (Case::key("role ARN: the role", &role).caller(ROLE), PRIN),
        (
            Case::key("role ARN: its session", &role).caller(SESSION),
            PRIN,
        ),
        (
            Case::key("role ARN: another role's session", &role).caller(OTHER_SESSION),
            NOTHING,
        ),
        (
            Case::key("session ARN: that session", &session).caller(SESSION),
            PRIN,
        ),
        (
            Case::key("session ARN: another session", &session).caller(SESSION2),
            NOTHING,
        ),
        (
            Case::key("session ARN: the role", &session).caller(ROLE),
            NOTHING,
        ),
        (Case::key("mixed: both flags", &mixed), BOTH),
        (
            Case::key("mixed: other user of account", &mixed).caller(EXAMPLE_USER),
            ACCT,
        ),
        (
            Case::key("service principal never matches", &service),
            NOTHING,
        ),
        (Case::key("service + user", &service_and_user), PRIN),
        (
            Case::key("deny by account applies to its users", &deny_account).caller(BOB),
            deny("NoOther"),
        ),
        (
            Case::key("deny by account: not ours", &deny_account),
            NOTHING,
        ),
    ]);
}

#[test]
fn policy_not_principal() {
    let listed = key_stmt(
        "Deny",
        r#""Sid":"OnlyAlice","NotPrincipal":{"AWS":["arn:aws:iam::111122223333:user/alice","arn:aws:iam::111122223333:root"]}"#,
        "",
    );
    let user_only = key_stmt(
        "Deny",
        r#""Sid":"UserOnly","NotPrincipal":{"AWS":"arn:aws:iam::111122223333:user/alice"}"#,
        "",
    );
    let role_and_acct = key_stmt(
        "Deny",
        r#""Sid":"RoleOnly","NotPrincipal":{"AWS":["arn:aws:iam::111122223333:role/ExampleRole","111122223333"]}"#,
        "",
    );
    let session_and_acct = key_stmt(
        "Deny",
        r#""Sid":"SessionOnly","NotPrincipal":{"AWS":["arn:aws:sts::111122223333:assumed-role/ExampleRole/s1","111122223333"]}"#,
        "",
    );
    let star = key_stmt("Deny", r#""Sid":"Nobody","NotPrincipal":"*""#, "");
    let with_allow = format!(
        r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{ROOT}"}},"Action":"kms:*","Resource":"*"}},{{"Sid":"OnlyAlice","Effect":"Deny","NotPrincipal":{{"AWS":["{ALICE}","{ROOT}"]}},"Action":"kms:*","Resource":"*"}}]}}"#
    );
    check(vec![
        (
            Case::key("listed user with account: not denied", &listed),
            NOTHING,
        ),
        (
            Case::key("account root listed: not denied", &listed).caller(ROOT),
            NOTHING,
        ),
        (
            Case::key("other user: denied", &listed).caller(EXAMPLE_USER),
            deny("OnlyAlice"),
        ),
        (
            Case::key("session: denied", &listed).caller(SESSION),
            deny("OnlyAlice"),
        ),
        (
            Case::key("other account: denied", &listed).caller(BOB),
            deny("OnlyAlice"),
        ),
        (
            Case::key(
                "user without its account listed: denied (as in AWS)",
                &user_only,
            ),
            deny("UserOnly"),
        ),
        (
            Case::key("role + account: session not denied", &role_and_acct).caller(SESSION),
            NOTHING,
        ),
        (
            Case::key("role + account: role not denied", &role_and_acct).caller(ROLE),
            NOTHING,
        ),
        (
            Case::key("role + account: user denied", &role_and_acct),
            deny("RoleOnly"),
        ),
        (
            Case::key("role + account: root not denied", &role_and_acct).caller(ROOT),
            NOTHING,
        ),
        (
            Case::key(
                "session + account: that session not denied",
                &session_and_acct,
            )
            .caller(SESSION),
            NOTHING,
        ),
        (
            Case::key("session + account: other session denied", &session_and_acct)
                .caller(SESSION2),
            deny("SessionOnly"),
        ),
        (
            Case::key("NotPrincipal '*' excludes everyone", &star).caller(BOB),
            NOTHING,
        ),
        (
            Case::key("with allow: alice allowed, not denied", &with_allow),
            ACCT,
        ),
        (
            Case::key("with allow: other user allowed and denied", &with_allow)
                .caller(EXAMPLE_USER),
            deny_and("OnlyAlice", ACCT),
        ),
    ]);
}

#[test]
fn policy_actions_resources_and_deny() {
    let p = |action: &str, resource: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":{action},"Resource":{resource}}}]}}"#
        )
    };
    let reencrypt = p(r#""kms:ReEncrypt*""#, r#""*""#);
    let gdk = p(r#"["kms:GenerateDataKey*","kms:Describe*"]"#, r#""*""#);
    let upper = p(r#""KMS:ENCRYPT""#, r#""*""#);
    let qmark = p(r#""kms:List?eys""#, r#""*""#);
    let all = p(r#""*""#, r#""*""#);
    let key_wild = p(r#""kms:*""#, r#""arn:aws:kms:*:111122223333:key/*""#);
    let exact = p(r#""kms:*""#, &format!("[\"{KEY}\"]"));
    let not_action = r#"{"Statement":{"Effect":"Allow","Principal":"*","NotAction":["kms:Decrypt","kms:ReEncrypt*"],"Resource":"*"}}"#;
    let not_resource = format!(
        r#"{{"Statement":[{{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}},{{"Sid":"OnlyThisKey","Effect":"Deny","Principal":"*","Action":"kms:*","NotResource":"{KEY}"}}]}}"#
    );
    let deny_wins = r#"{"Statement":[
        {"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},
        {"Sid":"NoDecrypt","Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*"},
        {"Effect":"Deny","Principal":"*","Action":["kms:Decrypt","kms:Encrypt"],"Resource":"*"}]}"#;
    let deny_no_sid = r#"{"Statement":[{"Sid":"","Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*"}]}"#;
    check(vec![
        (
            Case::key("ReEncrypt*: ReEncryptFrom", &reencrypt).action("kms:ReEncryptFrom"),
            PRIN,
        ),
        (
            Case::key("ReEncrypt*: lowercase request", &reencrypt).action("kms:reencryptto"),
            PRIN,
        ),
        (Case::key("ReEncrypt*: Encrypt", &reencrypt), NOTHING),
        (
            Case::key("GenerateDataKey*: pair without plaintext", &gdk)
                .action("kms:GenerateDataKeyPairWithoutPlaintext"),
            PRIN,
        ),
        (
            Case::key("Describe*: DescribeKey", &gdk).action("kms:DescribeKey"),
            PRIN,
        ),
        (
            Case::key("GenerateDataKey*: Decrypt", &gdk).action("kms:Decrypt"),
            NOTHING,
        ),
        (
            Case::key("upper-case policy action", &upper).action("kms:encrypt"),
            PRIN,
        ),
        (
            Case::key("'?' wildcard", &qmark)
                .action("kms:ListKeys")
                .resource("*"),
            PRIN,
        ),
        (
            Case::key("'?' needs one char", &qmark)
                .action("kms:ListKKeys")
                .resource("*"),
            NOTHING,
        ),
        (
            Case::key("action '*' matches other services", &all).action("s3:GetObject"),
            PRIN,
        ),
        (
            Case::key("resource wildcard: key of account", &key_wild),
            PRIN,
        ),
        (
            Case::key("resource wildcard: other key of account", &key_wild).resource(OTHER_KEY),
            PRIN,
        ),
        (
            Case::key("resource wildcard: alias is not key/*", &key_wild).resource(ALIAS),
            NOTHING,
        ),
        (
            Case::key("resource wildcard: other account", &key_wild).resource(EU_KEY),
            NOTHING,
        ),
        (
            Case::key("resource wildcard: '*' resource", &key_wild).resource("*"),
            NOTHING,
        ),
        (Case::key("exact resource: the key", &exact), PRIN),
        (
            Case::key("exact resource: another key", &exact).resource(OTHER_KEY),
            NOTHING,
        ),
        (Case::key("NotAction: Encrypt allowed", not_action), PRIN),
        (
            Case::key("NotAction: Decrypt excluded", not_action).action("kms:Decrypt"),
            NOTHING,
        ),
        (
            Case::key("NotAction: ReEncrypt* excluded", not_action).action("KMS:ReEncryptFrom"),
            NOTHING,
        ),
        (
            Case::key("NotResource: this key not denied", &not_resource),
            PRIN,
        ),
        (
            Case::key("NotResource: other key denied", &not_resource).resource(OTHER_KEY),
            deny_and("OnlyThisKey", PRIN),
        ),
        (
            Case::key("deny wins: first deny reported", deny_wins).action("kms:Decrypt"),
            deny_and("NoDecrypt", PRIN),
        ),
        (
            Case::key("deny wins: unnamed deny", deny_wins),
            deny_and("statement 3", PRIN),
        ),
        (
            Case::key("deny wins: unaffected action", deny_wins).action("kms:DescribeKey"),
            PRIN,
        ),
        (
            Case::key("deny with empty Sid", deny_no_sid),
            deny("statement 1"),
        ),
    ]);
}

#[test]
fn policy_identity_policies() {
    let simple = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":["kms:Encrypt","kms:Decrypt"],"Resource":"*"}}"#;
    let scoped = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"arn:aws:kms:us-west-2:111122223333:key/*"}]}"#;
    let variable = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"arn:aws:kms:*:${aws:PrincipalAccount}:key/*"}]}"#;
    let literal_2008 = r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"arn:aws:kms:*:${aws:PrincipalAccount}:key/*"}]}"#;
    let deny = r#"{"Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},{"Sid":"NoDelete","Effect":"Deny","Action":["kms:ScheduleKeyDeletion","kms:Delete*"],"Resource":"*"}]}"#;
    let tag_var = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"aws:ResourceTag/Owner":"${aws:username}"}}}]}"#;
    check(vec![
        (Case::identity("allow listed action", simple), ALLOW),
        (
            Case::identity("action not listed", simple)
                .action("kms:CreateKey")
                .resource("*"),
            NOTHING,
        ),
        (
            Case::identity("scoped resource: matching key", scoped),
            ALLOW,
        ),
        (
            Case::identity("scoped resource: other region", scoped).resource(EU_KEY),
            NOTHING,
        ),
        (
            Case::identity("scoped resource: '*' resource", scoped)
                .action("kms:ListKeys")
                .resource("*"),
            NOTHING,
        ),
        (
            Case::identity("resource variable substituted", variable)
                .ctx("aws:PrincipalAccount", &["111122223333"]),
            ALLOW,
        ),
        (
            Case::identity("resource variable: other account", variable)
                .ctx("aws:PrincipalAccount", &["444455556666"]),
            NOTHING,
        ),
        (
            Case::identity("resource variable missing", variable),
            NOTHING,
        ),
        (
            Case::identity("2008-10-17: variables are literal", literal_2008)
                .ctx("aws:PrincipalAccount", &["111122223333"]),
            NOTHING,
        ),
        (
            Case::identity("deny in identity policy", deny).action("kms:ScheduleKeyDeletion"),
            Want(Some("NoDelete"), false, false, true),
        ),
        (
            Case::identity("deny wildcard action", deny)
                .action("kms:DeleteAlias")
                .resource(ALIAS),
            Want(Some("NoDelete"), false, false, true),
        ),
        (
            Case::identity("deny not applicable", deny).action("kms:TagResource"),
            ALLOW,
        ),
        (
            Case::identity("condition variable: owner is caller", tag_var)
                .ctx("aws:username", &["alice"])
                .ctx("aws:ResourceTag/Owner", &["alice"]),
            ALLOW,
        ),
        (
            Case::identity("condition variable: owner is other", tag_var)
                .ctx("aws:username", &["alice"])
                .ctx("aws:ResourceTag/Owner", &["bob"]),
            NOTHING,
        ),
        (
            Case::identity("condition variable: no username", tag_var)
                .ctx("aws:ResourceTag/Owner", &["alice"]),
            NOTHING,
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// Condition operators.

/// (name, Condition JSON, context, whether the condition holds)
type CondRow = (
    &'static str,
    &'static str,
    Vec<(&'static str, Vec<&'static str>)>,
    bool,
);

fn c(k: &'static str, v: &[&'static str]) -> Vec<(&'static str, Vec<&'static str>)> {
    vec![(k, v.to_vec())]
}

fn c2(
    k1: &'static str,
    v1: &[&'static str],
    k2: &'static str,
    v2: &[&'static str],
) -> Vec<(&'static str, Vec<&'static str>)> {
    vec![(k1, v1.to_vec()), (k2, v2.to_vec())]
}

fn none() -> Vec<(&'static str, Vec<&'static str>)> {
    Vec::new()
}

#[test]
fn policy_condition_operators() {
    let rows: Vec<CondRow> = vec![
        // String operators.
        (
            "StringEquals match",
            r#"{"StringEquals":{"kms:CallerAccount":"111122223333"}}"#,
            c("kms:CallerAccount", &["111122223333"]),
            true,
        ),
        (
            "StringEquals mismatch",
            r#"{"StringEquals":{"kms:CallerAccount":"111122223333"}}"#,
            c("kms:CallerAccount", &["444455556666"]),
            false,
        ),
        (
            "StringEquals missing key",
            r#"{"StringEquals":{"kms:CallerAccount":"111122223333"}}"#,
            none(),
            false,
        ),
        (
            "StringEquals key name case-insensitive",
            r#"{"StringEquals":{"KMS:CALLERACCOUNT":"111122223333"}}"#,
            c("kms:calleraccount", &["111122223333"]),
            true,
        ),
        (
            "StringEquals value case-sensitive",
            r#"{"StringEquals":{"kms:KeySpec":"SYMMETRIC_DEFAULT"}}"#,
            c("kms:KeySpec", &["symmetric_default"]),
            false,
        ),
        (
            "StringEquals no wildcards",
            r#"{"StringEquals":{"kms:KeySpec":"RSA_*"}}"#,
            c("kms:KeySpec", &["RSA_2048"]),
            false,
        ),
        (
            "StringEquals values ORed",
            r#"{"StringEquals":{"kms:KeySpec":["RSA_2048","RSA_4096"]}}"#,
            c("kms:KeySpec", &["RSA_4096"]),
            true,
        ),
        (
            "StringEquals number value",
            r#"{"StringEquals":{"kms:CallerAccount":111122223333}}"#,
            c("kms:CallerAccount", &["111122223333"]),
            true,
        ),
        (
            "StringEquals multi-valued request",
            r#"{"StringEquals":{"aws:TagKeys":"a"}}"#,
            c("aws:TagKeys", &["b", "a"]),
            true,
        ),
        (
            "StringNotEquals differs",
            r#"{"StringNotEquals":{"kms:KeySpec":"RSA_2048"}}"#,
            c("kms:KeySpec", &["RSA_4096"]),
            true,
        ),
        (
            "StringNotEquals equal",
            r#"{"StringNotEquals":{"kms:KeySpec":"RSA_2048"}}"#,
            c("kms:KeySpec", &["RSA_2048"]),
            false,
        ),
        (
            "StringNotEquals any of list",
            r#"{"StringNotEquals":{"kms:KeySpec":["RSA_2048","RSA_4096"]}}"#,
            c("kms:KeySpec", &["RSA_4096"]),
            false,
        ),
        (
            "StringNotEquals missing key is true",
            r#"{"StringNotEquals":{"kms:KeySpec":"RSA_2048"}}"#,
            none(),
            true,
        ),
        (
            "StringNotEquals multi-valued request",
            r#"{"StringNotEquals":{"aws:TagKeys":"a"}}"#,
            c("aws:TagKeys", &["b", "a"]),
            false,
        ),
        (
            "StringEqualsIgnoreCase",
            r#"{"StringEqualsIgnoreCase":{"kms:EncryptionContext:AppName":"ExampleApp"}}"#,
            c("kms:EncryptionContext:AppName", &["EXAMPLEAPP"]),
            true,
        ),
        (
            "StringEqualsIgnoreCase mismatch",
            r#"{"StringEqualsIgnoreCase":{"kms:EncryptionContext:AppName":"ExampleApp"}}"#,
            c("kms:EncryptionContext:AppName", &["Other"]),
            false,
        ),
        (
            "StringNotEqualsIgnoreCase equal",
            r#"{"StringNotEqualsIgnoreCase":{"kms:EncryptionContext:AppName":"ExampleApp"}}"#,
            c("kms:EncryptionContext:AppName", &["exampleAPP"]),
            false,
        ),
        (
            "StringNotEqualsIgnoreCase differs",
            r#"{"StringNotEqualsIgnoreCase":{"kms:EncryptionContext:AppName":"ExampleApp"}}"#,
            c("kms:EncryptionContext:AppName", &["Other"]),
            true,
        ),
        (
            "StringNotEqualsIgnoreCase missing",
            r#"{"StringNotEqualsIgnoreCase":{"kms:EncryptionContext:AppName":"ExampleApp"}}"#,
            none(),
            true,
        ),
        (
            "StringLike *",
            r#"{"StringLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/Admin*"}}"#,
            c(
                "aws:PrincipalArn",
                &["arn:aws:iam::111122223333:role/AdminRole"],
            ),
            true,
        ),
        (
            "StringLike mismatch",
            r#"{"StringLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/Admin*"}}"#,
            c(
                "aws:PrincipalArn",
                &["arn:aws:iam::111122223333:role/Reader"],
            ),
            false,
        ),
        (
            "StringLike case-sensitive",
            r#"{"StringLike":{"kms:RequestAlias":"alias/Example*"}}"#,
            c("kms:RequestAlias", &["alias/example1"]),
            false,
        ),
        (
            "StringLike ?",
            r#"{"StringLike":{"kms:RequestAlias":"alias/app-?"}}"#,
            c("kms:RequestAlias", &["alias/app-1"]),
            true,
        ),
        (
            "StringLike ? exactly one",
            r#"{"StringLike":{"kms:RequestAlias":"alias/app-?"}}"#,
            c("kms:RequestAlias", &["alias/app-12"]),
            false,
        ),
        (
            "StringLike missing",
            r#"{"StringLike":{"kms:RequestAlias":"*"}}"#,
            none(),
            false,
        ),
        (
            "StringNotLike matches",
            r#"{"StringNotLike":{"kms:RequestAlias":"alias/*-test"}}"#,
            c("kms:RequestAlias", &["alias/x-test"]),
            false,
        ),
        (
            "StringNotLike no match",
            r#"{"StringNotLike":{"kms:RequestAlias":"alias/*-test"}}"#,
            c("kms:RequestAlias", &["alias/prod"]),
            true,
        ),
        (
            "StringNotLike missing",
            r#"{"StringNotLike":{"kms:RequestAlias":"alias/*-test"}}"#,
            none(),
            true,
        ),
        (
            "Encryption context suffix case-sensitive",
            r#"{"StringEquals":{"kms:EncryptionContext:AppName":"x"}}"#,
            c("kms:EncryptionContext:appname", &["x"]),
            false,
        ),
        (
            "Tag suffix case-sensitive",
            r#"{"StringEquals":{"aws:ResourceTag/Owner":"x"}}"#,
            c("AWS:RESOURCETAG/Owner", &["x"]),
            true,
        ),
        (
            "Tag suffix case-sensitive mismatch",
            r#"{"StringEquals":{"aws:ResourceTag/Owner":"x"}}"#,
            c("aws:ResourceTag/owner", &["x"]),
            false,
        ),
        (
            "Variable in value",
            r#"{"StringEquals":{"kms:EncryptionContext:user":"${aws:username}"}}"#,
            c2(
                "aws:username",
                &["alice"],
                "kms:EncryptionContext:user",
                &["alice"],
            ),
            true,
        ),
        (
            "Variable in value mismatch",
            r#"{"StringEquals":{"kms:EncryptionContext:user":"${aws:username}"}}"#,
            c2(
                "aws:username",
                &["alice"],
                "kms:EncryptionContext:user",
                &["bob"],
            ),
            false,
        ),
        (
            "Variable missing",
            r#"{"StringEquals":{"kms:EncryptionContext:user":"${aws:username}"}}"#,
            c("kms:EncryptionContext:user", &["${aws:username}"]),
            false,
        ),
        (
            "Variable default",
            r#"{"StringEquals":{"kms:EncryptionContext:team":"${aws:PrincipalTag/team, 'none'}"}}"#,
            c("kms:EncryptionContext:team", &["none"]),
            true,
        ),
        (
            "Variable value is literal in StringLike",
            r#"{"StringLike":{"kms:EncryptionContext:user":"u-${aws:username}"}}"#,
            c2(
                "aws:username",
                &["*"],
                "kms:EncryptionContext:user",
                &["u-alice"],
            ),
            false,
        ),
        (
            "Variable escapes",
            r#"{"StringEquals":{"kms:EncryptionContext:x":"a${*}b${?}c${$}"}}"#,
            c("kms:EncryptionContext:x", &["a*b?c$"]),
            true,
        ),
        // Multiple keys and operators are ANDed.
        (
            "Keys ANDed: one missing",
            r#"{"StringEquals":{"a:x":"1","a:y":"2"}}"#,
            c("a:x", &["1"]),
            false,
        ),
        (
            "Keys ANDed: both",
            r#"{"StringEquals":{"a:x":"1","a:y":"2"}}"#,
            c2("a:x", &["1"], "a:y", &["2"]),
            true,
        ),
        (
            "Operators ANDed: one fails",
            r#"{"StringEquals":{"a:x":"1"},"NumericLessThan":{"a:y":"2"}}"#,
            c2("a:x", &["1"], "a:y", &["3"]),
            false,
        ),
        (
            "Operators ANDed: both",
            r#"{"StringEquals":{"a:x":"1"},"NumericLessThan":{"a:y":"2"}}"#,
            c2("a:x", &["1"], "a:y", &["1"]),
            true,
        ),
        // Numeric.
        (
            "NumericEquals",
            r#"{"NumericEquals":{"a:n":"10"}}"#,
            c("a:n", &["10"]),
            true,
        ),
        (
            "NumericEquals normalised",
            r#"{"NumericEquals":{"a:n":10}}"#,
            c("a:n", &["10.0"]),
            true,
        ),
        (
            "NumericEquals differs",
            r#"{"NumericEquals":{"a:n":"10"}}"#,
            c("a:n", &["11"]),
            false,
        ),
        (
            "NumericEquals not a number",
            r#"{"NumericEquals":{"a:n":"10"}}"#,
            c("a:n", &["ten"]),
            false,
        ),
        (
            "NumericEquals missing",
            r#"{"NumericEquals":{"a:n":"10"}}"#,
            none(),
            false,
        ),
        (
            "NumericNotEquals differs",
            r#"{"NumericNotEquals":{"a:n":"10"}}"#,
            c("a:n", &["11"]),
            true,
        ),
        (
            "NumericNotEquals equal",
            r#"{"NumericNotEquals":{"a:n":"10"}}"#,
            c("a:n", &["10"]),
            false,
        ),
        (
            "NumericNotEquals missing",
            r#"{"NumericNotEquals":{"a:n":"10"}}"#,
            none(),
            true,
        ),
        (
            "NumericLessThan below",
            r#"{"NumericLessThan":{"a:n":3600}}"#,
            c("a:n", &["3599"]),
            true,
        ),
        (
            "NumericLessThan equal",
            r#"{"NumericLessThan":{"a:n":3600}}"#,
            c("a:n", &["3600"]),
            false,
        ),
        (
            "NumericLessThanEquals equal",
            r#"{"NumericLessThanEquals":{"a:n":"3600"}}"#,
            c("a:n", &["3600"]),
            true,
        ),
        (
            "NumericLessThanEquals above",
            r#"{"NumericLessThanEquals":{"a:n":"3600"}}"#,
            c("a:n", &["3601"]),
            false,
        ),
        (
            "NumericGreaterThan above",
            r#"{"NumericGreaterThan":{"a:n":"-1.5"}}"#,
            c("a:n", &["0"]),
            true,
        ),
        (
            "NumericGreaterThan equal",
            r#"{"NumericGreaterThan":{"a:n":"-1.5"}}"#,
            c("a:n", &["-1.5"]),
            false,
        ),
        (
            "NumericGreaterThanEquals equal",
            r#"{"NumericGreaterThanEquals":{"a:n":"7"}}"#,
            c("a:n", &["7"]),
            true,
        ),
        (
            "NumericGreaterThanEquals below",
            r#"{"NumericGreaterThanEquals":{"a:n":"7"}}"#,
            c("a:n", &["6.99"]),
            false,
        ),
        // Dates.
        (
            "DateLessThan before",
            r#"{"DateLessThan":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}"#,
            c("aws:CurrentTime", &["2025-12-31T23:59:59Z"]),
            true,
        ),
        (
            "DateLessThan same instant",
            r#"{"DateLessThan":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}"#,
            c("aws:CurrentTime", &["2026-01-01T00:00:00Z"]),
            false,
        ),
        (
            "DateLessThan millis",
            r#"{"DateLessThan":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}"#,
            c("aws:CurrentTime", &["2025-12-31T23:59:59.999Z"]),
            true,
        ),
        (
            "DateLessThanEquals same",
            r#"{"DateLessThanEquals":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}"#,
            c("aws:CurrentTime", &["2026-01-01T00:00:00.000Z"]),
            true,
        ),
        (
            "DateGreaterThan epoch policy value",
            r#"{"DateGreaterThan":{"aws:CurrentTime":1767225600}}"#,
            c("aws:CurrentTime", &["2026-01-01T00:00:01Z"]),
            true,
        ),
        (
            "DateGreaterThan not after",
            r#"{"DateGreaterThan":{"aws:CurrentTime":"1767225600"}}"#,
            c("aws:CurrentTime", &["2026-01-01T00:00:00Z"]),
            false,
        ),
        (
            "DateGreaterThanEquals same",
            r#"{"DateGreaterThanEquals":{"aws:CurrentTime":"2026-01-01"}}"#,
            c("aws:CurrentTime", &["2026-01-01T00:00:00Z"]),
            true,
        ),
        (
            "DateEquals offset",
            r#"{"DateEquals":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}"#,
            c("aws:CurrentTime", &["2026-01-01T01:00:00+01:00"]),
            true,
        ),
        (
            "DateEquals epoch request",
            r#"{"DateEquals":{"aws:EpochTime":"2026-01-01T00:00:00Z"}}"#,
            c("aws:EpochTime", &["1767225600"]),
            true,
        ),
        (
            "DateNotEquals differs",
            r#"{"DateNotEquals":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}"#,
            c("aws:CurrentTime", &["2026-01-02T00:00:00Z"]),
            true,
        ),
        (
            "DateNotEquals equal",
            r#"{"DateNotEquals":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}"#,
            c("aws:CurrentTime", &["2026-01-01T00:00:00Z"]),
            false,
        ),
        (
            "DateNotEquals missing",
            r#"{"DateNotEquals":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}"#,
            none(),
            true,
        ),
        (
            "DateLessThan missing",
            r#"{"DateLessThan":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}"#,
            none(),
            false,
        ),
        (
            "Date bad request value",
            r#"{"DateLessThan":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}"#,
            c("aws:CurrentTime", &["soon"]),
            false,
        ),
        // Bool.
        (
            "Bool true",
            r#"{"Bool":{"aws:SecureTransport":"true"}}"#,
            c("aws:SecureTransport", &["true"]),
            true,
        ),
        (
            "Bool false",
            r#"{"Bool":{"aws:SecureTransport":"true"}}"#,
            c("aws:SecureTransport", &["false"]),
            false,
        ),
        (
            "Bool json value, case-insensitive request",
            r#"{"Bool":{"aws:SecureTransport":true}}"#,
            c("aws:SecureTransport", &["TRUE"]),
            true,
        ),
        (
            "Bool json false",
            r#"{"Bool":{"aws:SecureTransport":false}}"#,
            c("aws:SecureTransport", &["false"]),
            true,
        ),
        (
            "Bool missing",
            r#"{"Bool":{"aws:SecureTransport":"false"}}"#,
            none(),
            false,
        ),
        (
            "Bool garbage request",
            r#"{"Bool":{"aws:SecureTransport":"true"}}"#,
            c("aws:SecureTransport", &["yes"]),
            false,
        ),
        // Binary.
        (
            "BinaryEquals",
            r#"{"BinaryEquals":{"a:b":"QmluYXJ5VmFsdWU="}}"#,
            c("a:b", &["QmluYXJ5VmFsdWU="]),
            true,
        ),
        (
            "BinaryEquals differs",
            r#"{"BinaryEquals":{"a:b":"QmluYXJ5VmFsdWU="}}"#,
            c("a:b", &["T3RoZXI="]),
            false,
        ),
        (
            "BinaryEquals not base64",
            r#"{"BinaryEquals":{"a:b":"QmluYXJ5VmFsdWU="}}"#,
            c("a:b", &["!!"]),
            false,
        ),
        (
            "BinaryEquals missing",
            r#"{"BinaryEquals":{"a:b":"QmluYXJ5VmFsdWU="}}"#,
            none(),
            false,
        ),
        // IP addresses.
        (
            "IpAddress v4 in range",
            r#"{"IpAddress":{"aws:SourceIp":"192.0.2.0/24"}}"#,
            c("aws:SourceIp", &["192.0.2.10"]),
            true,
        ),
        (
            "IpAddress v4 out of range",
            r#"{"IpAddress":{"aws:SourceIp":"192.0.2.0/24"}}"#,
            c("aws:SourceIp", &["192.0.3.10"]),
            false,
        ),
        (
            "IpAddress single address",
            r#"{"IpAddress":{"aws:SourceIp":"203.0.113.7"}}"#,
            c("aws:SourceIp", &["203.0.113.7"]),
            true,
        ),
        (
            "IpAddress /0",
            r#"{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}"#,
            c("aws:SourceIp", &["8.8.8.8"]),
            true,
        ),
        (
            "IpAddress v6 in range",
            r#"{"IpAddress":{"aws:SourceIp":"2001:DB8:1234:5678::/64"}}"#,
            c("aws:SourceIp", &["2001:db8:1234:5678::42"]),
            true,
        ),
        (
            "IpAddress v6 out of range",
            r#"{"IpAddress":{"aws:SourceIp":"2001:DB8:1234:5678::/64"}}"#,
            c("aws:SourceIp", &["2001:db8:1234:5679::1"]),
            false,
        ),
        (
            "IpAddress mixed list, v6 caller",
            r#"{"IpAddress":{"aws:SourceIp":["192.0.2.0/24","2001:db8::/32"]}}"#,
            c("aws:SourceIp", &["2001:db8:ffff::1"]),
            true,
        ),
        (
            "IpAddress v4 range vs v6 caller",
            r#"{"IpAddress":{"aws:SourceIp":"192.0.2.0/24"}}"#,
            c("aws:SourceIp", &["2001:db8::1"]),
            false,
        ),
        (
            "IpAddress v4-mapped v6 caller",
            r#"{"IpAddress":{"aws:SourceIp":"192.0.2.0/24"}}"#,
            c("aws:SourceIp", &["::ffff:192.0.2.1"]),
            true,
        ),
        (
            "IpAddress garbage caller",
            r#"{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}"#,
            c("aws:SourceIp", &["localhost"]),
            false,
        ),
        (
            "IpAddress missing",
            r#"{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}"#,
            none(),
            false,
        ),
        (
            "NotIpAddress in range",
            r#"{"NotIpAddress":{"aws:SourceIp":["192.0.2.0/24","203.0.113.0/24"]}}"#,
            c("aws:SourceIp", &["203.0.113.200"]),
            false,
        ),
        (
            "NotIpAddress out of range",
            r#"{"NotIpAddress":{"aws:SourceIp":["192.0.2.0/24","203.0.113.0/24"]}}"#,
            c("aws:SourceIp", &["198.51.100.1"]),
            true,
        ),
        (
            "NotIpAddress v6",
            r#"{"NotIpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#,
            c("aws:SourceIp", &["2001:db8::1"]),
            false,
        ),
        (
            "NotIpAddress missing",
            r#"{"NotIpAddress":{"aws:SourceIp":"192.0.2.0/24"}}"#,
            none(),
            true,
        ),
        // ARNs.
        (
            "ArnEquals exact",
            r#"{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/ExampleRole"}}"#,
            c("aws:PrincipalArn", &[ROLE]),
            true,
        ),
        (
            "ArnEquals differs",
            r#"{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/ExampleRole"}}"#,
            c("aws:PrincipalArn", &[ALICE]),
            false,
        ),
        (
            "ArnEquals case-sensitive",
            r#"{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/examplerole"}}"#,
            c("aws:PrincipalArn", &[ROLE]),
            false,
        ),
        (
            "ArnEquals with wildcard",
            r#"{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::*:role/Example*"}}"#,
            c("aws:PrincipalArn", &[ROLE]),
            true,
        ),
        (
            "ArnLike per component",
            r#"{"ArnLike":{"aws:SourceArn":"arn:aws:kms:*:111122223333:key/*"}}"#,
            c("aws:SourceArn", &[KEY]),
            true,
        ),
        (
            "ArnLike account mismatch",
            r#"{"ArnLike":{"aws:SourceArn":"arn:aws:kms:*:111122223333:key/*"}}"#,
            c("aws:SourceArn", &[EU_KEY]),
            false,
        ),
        (
            "ArnLike wildcard does not span components",
            r#"{"ArnLike":{"aws:SourceArn":"arn:aws:kms:us-*:*:key/*"}}"#,
            c("aws:SourceArn", &[EU_KEY]),
            false,
        ),
        (
            "ArnLike '*' value",
            r#"{"ArnLike":{"aws:SourceArn":"*"}}"#,
            c("aws:SourceArn", &[EU_KEY]),
            true,
        ),
        (
            "ArnLike ?",
            r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::11112222333?:user/alic?"}}"#,
            c("aws:PrincipalArn", &[ALICE]),
            true,
        ),
        (
            "ArnLike not an ARN",
            r#"{"ArnLike":{"aws:SourceArn":"arn:aws:kms:*:*:key/*"}}"#,
            c("aws:SourceArn", &["key/abc"]),
            false,
        ),
        (
            "ArnLike missing",
            r#"{"ArnLike":{"aws:SourceArn":"arn:aws:kms:*:*:key/*"}}"#,
            none(),
            false,
        ),
        (
            "ArnNotEquals equal",
            r#"{"ArnNotEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/ExampleRole"}}"#,
            c("aws:PrincipalArn", &[ROLE]),
            false,
        ),
        (
            "ArnNotEquals differs",
            r#"{"ArnNotEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/ExampleRole"}}"#,
            c("aws:PrincipalArn", &[ALICE]),
            true,
        ),
        (
            "ArnNotEquals missing",
            r#"{"ArnNotEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/ExampleRole"}}"#,
            none(),
            true,
        ),
        (
            "ArnNotLike matches",
            r#"{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/Admin*"}}"#,
            c(
                "aws:PrincipalArn",
                &["arn:aws:iam::111122223333:role/AdminX"],
            ),
            false,
        ),
        (
            "ArnNotLike no match",
            r#"{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/Admin*"}}"#,
            c("aws:PrincipalArn", &[ROLE]),
            true,
        ),
        (
            "ArnNotLike missing",
            r#"{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/Admin*"}}"#,
            none(),
            true,
        ),
        (
            "ArnLike variable",
            r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::${aws:PrincipalAccount}:user/*"}}"#,
            c2(
                "aws:PrincipalArn",
                &[ALICE],
                "aws:PrincipalAccount",
                &["111122223333"],
            ),
            true,
        ),
        // Null.
        (
            "Null true, missing",
            r#"{"Null":{"kms:EncryptionContextKeys":"true"}}"#,
            none(),
            true,
        ),
        (
            "Null true, present",
            r#"{"Null":{"kms:EncryptionContextKeys":"true"}}"#,
            c("kms:EncryptionContextKeys", &["a"]),
            false,
        ),
        (
            "Null true, present but empty",
            r#"{"Null":{"kms:EncryptionContextKeys":true}}"#,
            c("kms:EncryptionContextKeys", &[]),
            true,
        ),
        (
            "Null false, present",
            r#"{"Null":{"kms:EncryptionContextKeys":"false"}}"#,
            c("kms:EncryptionContextKeys", &["a"]),
            true,
        ),
        (
            "Null false, missing",
            r#"{"Null":{"kms:EncryptionContextKeys":false}}"#,
            none(),
            false,
        ),
        // IfExists.
        (
            "StringEqualsIfExists missing",
            r#"{"StringEqualsIfExists":{"kms:KeySpec":"RSA_2048"}}"#,
            none(),
            true,
        ),
        (
            "StringEqualsIfExists match",
            r#"{"StringEqualsIfExists":{"kms:KeySpec":"RSA_2048"}}"#,
            c("kms:KeySpec", &["RSA_2048"]),
            true,
        ),
        (
            "StringEqualsIfExists mismatch",
            r#"{"StringEqualsIfExists":{"kms:KeySpec":"RSA_2048"}}"#,
            c("kms:KeySpec", &["RSA_4096"]),
            false,
        ),
        (
            "StringNotEqualsIfExists equal",
            r#"{"StringNotEqualsIfExists":{"kms:KeySpec":"RSA_2048"}}"#,
            c("kms:KeySpec", &["RSA_2048"]),
            false,
        ),
        (
            "StringLikeIfExists missing",
            r#"{"StringLikeIfExists":{"kms:RequestAlias":"alias/x*"}}"#,
            none(),
            true,
        ),
        (
            "NumericLessThanIfExists missing",
            r#"{"NumericLessThanIfExists":{"a:n":"1"}}"#,
            none(),
            true,
        ),
        (
            "NumericLessThanIfExists present",
            r#"{"NumericLessThanIfExists":{"a:n":"1"}}"#,
            c("a:n", &["2"]),
            false,
        ),
        (
            "DateLessThanIfExists missing",
            r#"{"DateLessThanIfExists":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}"#,
            none(),
            true,
        ),
        (
            "BoolIfExists missing",
            r#"{"BoolIfExists":{"aws:MultiFactorAuthPresent":"true"}}"#,
            none(),
            true,
        ),
        (
            "BoolIfExists false",
            r#"{"BoolIfExists":{"aws:MultiFactorAuthPresent":"true"}}"#,
            c("aws:MultiFactorAuthPresent", &["false"]),
            false,
        ),
        (
            "IpAddressIfExists missing",
            r#"{"IpAddressIfExists":{"aws:SourceIp":"192.0.2.0/24"}}"#,
            none(),
            true,
        ),
        (
            "IpAddressIfExists outside",
            r#"{"IpAddressIfExists":{"aws:SourceIp":"192.0.2.0/24"}}"#,
            c("aws:SourceIp", &["10.0.0.1"]),
            false,
        ),
        (
            "ArnLikeIfExists missing",
            r#"{"ArnLikeIfExists":{"aws:SourceArn":"arn:aws:kms:*:*:key/*"}}"#,
            none(),
            true,
        ),
        (
            "BinaryEqualsIfExists missing",
            r#"{"BinaryEqualsIfExists":{"a:b":"AA=="}}"#,
            none(),
            true,
        ),
        // ForAnyValue.
        (
            "ForAnyValue one matches",
            r#"{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":["Department","Project"]}}"#,
            c("kms:EncryptionContextKeys", &["Owner", "Project"]),
            true,
        ),
        (
            "ForAnyValue none matches",
            r#"{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":["Department","Project"]}}"#,
            c("kms:EncryptionContextKeys", &["Owner"]),
            false,
        ),
        (
            "ForAnyValue missing",
            r#"{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":["Department"]}}"#,
            none(),
            false,
        ),
        (
            "ForAnyValue empty",
            r#"{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":["Department"]}}"#,
            c("kms:EncryptionContextKeys", &[]),
            false,
        ),
        (
            "ForAnyValue StringLike",
            r#"{"ForAnyValue:StringLike":{"aws:TagKeys":"Team*"}}"#,
            c("aws:TagKeys", &["Cost", "TeamA"]),
            true,
        ),
        (
            "ForAnyValue StringNotEquals some other",
            r#"{"ForAnyValue:StringNotEquals":{"aws:TagKeys":"a"}}"#,
            c("aws:TagKeys", &["a", "b"]),
            true,
        ),
        (
            "ForAnyValue StringNotEquals all listed",
            r#"{"ForAnyValue:StringNotEquals":{"aws:TagKeys":"a"}}"#,
            c("aws:TagKeys", &["a"]),
            false,
        ),
        (
            "ForAnyValue StringNotEquals missing",
            r#"{"ForAnyValue:StringNotEquals":{"aws:TagKeys":"a"}}"#,
            none(),
            false,
        ),
        (
            "ForAnyValue IfExists missing",
            r#"{"ForAnyValue:StringEqualsIfExists":{"aws:TagKeys":"a"}}"#,
            none(),
            true,
        ),
        (
            "ForAnyValue IgnoreCase",
            r#"{"ForAnyValue:StringEqualsIgnoreCase":{"aws:TagKeys":"OWNER"}}"#,
            c("aws:TagKeys", &["owner"]),
            true,
        ),
        // ForAllValues.
        (
            "ForAllValues subset",
            r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["Department","Project"]}}"#,
            c("kms:EncryptionContextKeys", &["Department"]),
            true,
        ),
        (
            "ForAllValues extra value",
            r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["Department","Project"]}}"#,
            c("kms:EncryptionContextKeys", &["Department", "Owner"]),
            false,
        ),
        (
            "ForAllValues missing",
            r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["Department"]}}"#,
            none(),
            true,
        ),
        (
            "ForAllValues empty",
            r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["Department"]}}"#,
            c("kms:EncryptionContextKeys", &[]),
            true,
        ),
        (
            "ForAllValues IgnoreCase",
            r#"{"ForAllValues:StringEqualsIgnoreCase":{"aws:TagKeys":["department"]}}"#,
            c("aws:TagKeys", &["Department", "DEPARTMENT"]),
            true,
        ),
        (
            "ForAllValues StringNotLike ok",
            r#"{"ForAllValues:StringNotLike":{"aws:TagKeys":"*secret*"}}"#,
            c("aws:TagKeys", &["a", "b"]),
            true,
        ),
        (
            "ForAllValues StringNotLike one bad",
            r#"{"ForAllValues:StringNotLike":{"aws:TagKeys":"*secret*"}}"#,
            c("aws:TagKeys", &["a", "topsecret"]),
            false,
        ),
        (
            "ForAllValues grant operations",
            r#"{"ForAllValues:StringLike":{"kms:GrantOperations":["Encrypt","Decrypt","GenerateDataKey*"]}}"#,
            c(
                "kms:GrantOperations",
                &["Decrypt", "GenerateDataKeyWithoutPlaintext"],
            ),
            true,
        ),
        (
            "ForAllValues grant operations, extra",
            r#"{"ForAllValues:StringLike":{"kms:GrantOperations":["Encrypt","Decrypt","GenerateDataKey*"]}}"#,
            c("kms:GrantOperations", &["Decrypt", "RetireGrant"]),
            false,
        ),
        (
            "ForAllValues numeric",
            r#"{"ForAllValues:NumericLessThan":{"a:n":"10"}}"#,
            c("a:n", &["1", "9"]),
            true,
        ),
        (
            "ForAllValues numeric one big",
            r#"{"ForAllValues:NumericLessThan":{"a:n":"10"}}"#,
            c("a:n", &["1", "10"]),
            false,
        ),
        (
            "Operator name case-insensitive",
            r#"{"forallvalues:stringequals":{"aws:TagKeys":["a"]}}"#,
            c("aws:TagKeys", &["a"]),
            true,
        ),
    ];
    let mut failures = Vec::new();
    for (name, cond, ctx, want) in &rows {
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{cond}}}}}"#
        );
        let case = Case {
            name,
            kind: PolicyKind::Key,
            policy,
            caller: ALICE,
            action: "kms:Encrypt",
            resource: KEY,
            ctx: ctx.clone(),
        };
        let got = case.evaluate().allow_principal;
        if got != *want {
            failures.push(format!(
                "{name}: {cond} with {ctx:?}: got {got}, want {want}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} condition rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Parse errors.

#[test]
fn policy_parse_errors() {
    let k = PolicyKind::Key;
    let i = PolicyKind::Identity;
    let st = |body: &str| format!(r#"{{"Version":"2012-10-17","Statement":[{{{body}}}]}}"#);
    let ok = r#""Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*""#;
    let cond = |c: &str| st(&format!(r#"{ok},"Condition":{c}"#));
    let rows: Vec<(String, PolicyKind, &str)> = vec![
        ("{".into(), k, "policy is not valid JSON"),
        ("".into(), k, "policy is not valid JSON"),
        ("[]".into(), k, "policy must be a JSON object, not an array"),
        (r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}],"Foo":1}"#.into(), k, "unknown top-level member \"Foo\""),
        (r#"{"Version":"2020-01-01","Statement":{}}"#.into(), k, "Version must be \"2012-10-17\" or \"2008-10-17\""),
        (r#"{"Version":2012,"Statement":{}}"#.into(), k, "Version must be"),
        (r#"{"Id":5,"Statement":{}}"#.into(), k, "Id must be a string"),
        (r#"{"Version":"2012-10-17"}"#.into(), k, "policy is missing Statement"),
        (r#"{"Statement":[]}"#.into(), k, "Statement must not be an empty array"),
        (r#"{"Statement":"x"}"#.into(), k, "Statement must be an object or an array of objects"),
        (r#"{"Statement":[1]}"#.into(), k, "Statement 1 must be an object, not a number"),
        (format!(r#"{{"Statement":[{{{ok}}},{{"Effect":"allow","Principal":"*","Action":"kms:*","Resource":"*"}}]}}"#), k, "Statement 2: Effect must be \"Allow\" or \"Deny\""),
        (st(r#""Principal":"*","Action":"kms:*","Resource":"*""#), k, "Statement 1 is missing Effect"),
        (st(r#""Effect":true,"Principal":"*","Action":"kms:*","Resource":"*""#), k, "Effect must be \"Allow\" or \"Deny\", not a boolean"),
        (st(&format!(r#"{ok},"NotAction":"kms:Decrypt""#)), k, "Statement 1 has both Action and NotAction"),
        (st(&format!(r#"{ok},"NotResource":"*""#)), k, "Statement 1 has both Resource and NotResource"),
        (st(&format!(r#"{ok},"NotPrincipal":"*""#)), k, "Statement 1 has both Principal and NotPrincipal"),
        (st(r#""Effect":"Allow","Principal":"*","Resource":"*""#), k, "Statement 1 is missing Action"),
        (st(r#""Effect":"Allow","Principal":"*","Action":"kms:*""#), k, "Statement 1 is missing Resource"),
        (st(r#""Effect":"Allow","Principal":"*","Action":[],"Resource":"*""#), k, "Statement 1: Action must not be an empty array"),
        (st(r#""Effect":"Allow","Principal":"*","Action":["kms:Encrypt",1],"Resource":"*""#), k, "Statement 1: Action element 2 must be a string, not a number"),
        (st(r#""Effect":"Allow","Principal":"*","Action":{"a":1},"Resource":"*""#), k, "Action must be a string or an array of strings, not an object"),
        (st(r#""Effect":"Allow","Principal":"*","Action":"Encrypt","Resource":"*""#), k, "Action \"Encrypt\" is invalid"),
        (st(r#""Effect":"Allow","Principal":"*","NotAction":"kms:","Resource":"*""#), k, "NotAction \"kms:\" is invalid"),
        (st(r#""Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"key/1""#), k, "Resource \"key/1\" is invalid: expected \"*\" or an ARN"),
        (st(r#""Effect":"Allow","Principal":"*","Action":"kms:*","Resource":5"#), k, "Resource must be a string or an array of strings, not a number"),
        (st(r#""Effect":"Allow","Principal":"*","Action":"kms:*","Resource":[]"#), k, "Resource must not be an empty array"),
        (st(r#""Effect":"Allow","Action":"kms:*","Resource":"*""#), k, "Statement 1 is missing Principal (or NotPrincipal)"),
        (st(ok), i, "Statement 1: Principal is not allowed in an identity policy"),
        (st(r#""Effect":"Deny","NotPrincipal":"*","Action":"kms:*","Resource":"*""#), i, "Statement 1: NotPrincipal is not allowed in an identity policy"),
        (st(r#""Effect":"Allow","Principal":"alice","Action":"kms:*","Resource":"*""#), k, "Principal must be \"*\" or an object"),
        (st(r#""Effect":"Allow","Principal":{},"Action":"kms:*","Resource":"*""#), k, "Principal must not be an empty object"),
        (st(r#""Effect":"Allow","Principal":{"AWS":[]},"Action":"kms:*","Resource":"*""#), k, "Principal.AWS must not be an empty array"),
        (st(r#""Effect":"Allow","Principal":{"AWS":"bob"},"Action":"kms:*","Resource":"*""#), k, "invalid AWS principal \"bob\""),
        (st(r#""Effect":"Allow","Principal":{"AWS":"arn:aws:iam::*:root"},"Action":"kms:*","Resource":"*""#), k, "wildcards are not allowed in principal ARNs"),
        (st(r#""Effect":"Allow","Principal":{"AWS":"arn:aws:iam::1234:user/x"},"Action":"kms:*","Resource":"*""#), k, "the account must be 12 digits"),
        (st(r#""Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:group/G"},"Action":"kms:*","Resource":"*""#), k, "expected an account root, user, role or assumed-role ARN"),
        (st(r#""Effect":"Allow","Principal":{"AWS":"1111222233334"},"Action":"kms:*","Resource":"*""#), k, "invalid AWS principal \"1111222233334\""),
        (st(r#""Effect":"Allow","Principal":{"Foo":"x"},"Action":"kms:*","Resource":"*""#), k, "unknown principal type \"Foo\""),
        (st(r#""Effect":"Allow","Principal":{"Service":""},"Action":"kms:*","Resource":"*""#), k, "Principal.Service element 1 must not be empty"),
        (st(r#""Effect":"Allow","NotPrincipal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*""#), k, "NotPrincipal can only be used with \"Effect\": \"Deny\""),
        (st(&format!(r#"{ok},"Effects":"Allow""#)), k, "Statement 1 has unknown member \"Effects\""),
        (st(&format!(r#"{ok},"Sid":7"#)), k, "Statement 1: Sid must be a string"),
        (format!(r#"{{"Statement":[{{"Sid":"A",{ok}}},{{"Sid":"A",{ok}}}]}}"#), k, "Statement 2: duplicate Sid \"A\""),
        (st(&format!(r#"{ok},"Effect":"Deny""#)), k, "duplicate member \"Effect\""),
        (cond(r#"{"StringEqualz":{"a:b":"c"}}"#), k, "Statement 1: unknown condition operator StringEqualz"),
        (cond(r#"{"ForSomeValues:StringEquals":{"a:b":"c"}}"#), k, "unknown condition operator ForSomeValues:StringEquals"),
        (cond(r#"{"StringEqualsIfExist":{"a:b":"c"}}"#), k, "unknown condition operator StringEqualsIfExist"),
        (cond(r#"{"NullIfExists":{"a:b":"true"}}"#), k, "Null cannot take IfExists"),
        (cond(r#"{"ForAnyValue:Null":{"a:b":"true"}}"#), k, "Null cannot take ForAnyValue/ForAllValues"),
        (cond(r#""x""#), k, "Statement 1: Condition must be an object, not a string"),
        (cond(r#"{"StringEquals":"x"}"#), k, "Condition operator StringEquals must map to an object of condition keys"),
        (cond(r#"{"StringEquals":{}}"#), k, "Condition operator StringEquals has no condition keys"),
        (cond(r#"{"StringEquals":{"a:b":[]}}"#), k, "StringEquals value for key a:b must not be an empty array"),
        (cond(r#"{"StringEquals":{"a:b":{"x":1}}}"#), k, "StringEquals value for key a:b must be a string, number, boolean or an array of them, not an object"),
        (cond(r#"{"StringEquals":{"a:b":["x",null]}}"#), k, "StringEquals value for key a:b element 2 must be a string, number or boolean, not null"),
        (cond(r#"{"StringEquals":{"SourceIp":"x"}}"#), k, "invalid condition key \"SourceIp\""),
        (cond(r#"{"NumericLessThan":{"a:n":"abc"}}"#), k, "NumericLessThan value \"abc\" for key a:n is not a number"),
        (cond(r#"{"DateLessThan":{"aws:CurrentTime":"tomorrow"}}"#), k, "DateLessThan value \"tomorrow\" for key aws:currenttime is not a date"),
        (cond(r#"{"IpAddress":{"aws:SourceIp":"300.1.1.1/8"}}"#), k, "IpAddress value \"300.1.1.1/8\" for key aws:sourceip is not an IP address or CIDR range"),
        (cond(r#"{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/33"}}"#), k, "is not an IP address or CIDR range"),
        (cond(r#"{"Bool":{"aws:SecureTransport":"yes"}}"#), k, "Bool value \"yes\" for key aws:securetransport is not \"true\" or \"false\""),
        (cond(r#"{"BinaryEquals":{"a:b":"!!!"}}"#), k, "BinaryEquals value \"!!!\" for key a:b is not base64"),
        (cond(r#"{"Null":{"a:b":["true","false"]}}"#), k, "Null for key a:b takes exactly one value"),
        (cond(r#"{"Null":{"a:b":"maybe"}}"#), k, "Null value \"maybe\" for key a:b is not \"true\" or \"false\""),
        (cond(r#"{"StringEquals":{"a:b":"${aws:username, nodefault}"}}"#), k, "policy variable default value must be in single quotes"),
        (cond(r#"{"ArnLike":{"aws:SourceArn":"arn:aws:kms:*:key/*"}}"#), k, "ArnLike value for key aws:sourcearn: \"arn:aws:kms:*:key/*\" is not a valid ARN"),
        (st(r#""Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"arn:aws:kms:*:key/*""#), k, "Statement 1: Resource \"arn:aws:kms:*:key/*\" is not a valid ARN"),
    ];
    let mut failures = Vec::new();
    for (doc, kind, want) in &rows {
        match Policy::parse(doc, *kind) {
            Ok(_) => failures.push(format!("accepted: {doc}")),
            Err(e) if !e.to_string().contains(want) => {
                failures.push(format!("{doc}\n   error {e:?}\n   want  {want:?}"))
            }
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} parse-error rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn policy_parse_accepts_valid_forms() {
    let docs: &[(&str, PolicyKind)] = &[
        (DEFAULT_KEY_POLICY, PolicyKind::Key),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":["*"]},"Action":["kms:*"],"Resource":["*"]}}"#,
            PolicyKind::Key,
        ),
        (
            r#"{"Version":"2008-10-17","Statement":{"Effect":"Deny","Principal":{"Service":"ec2.amazonaws.com","AWS":"111122223333"},"NotAction":"kms:Decrypt","NotResource":"arn:aws:kms:*:*:key/*"}}"#,
            PolicyKind::Key,
        ),
        (
            r#"{"Statement":{"Sid":"","Effect":"Allow","Principal":{"AWS":"arn:aws:sts::111122223333:assumed-role/R/s","Federated":"cognito-identity.amazonaws.com"},"Action":"*","Resource":"*"}}"#,
            PolicyKind::Key,
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*","Condition":{"StringEquals":{"a:b":[1,true,"x"]},"DateGreaterThan":{"aws:CurrentTime":1767225600}}}}"#,
            PolicyKind::Identity,
        ),
        (
            r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws-us-gov:iam::111122223333:user/path/to/u"},"Action":"kms:Encrypt","Resource":"*"}}"#,
            PolicyKind::Key,
        ),
    ];
    for (doc, kind) in docs {
        if let Err(e) = Policy::parse(doc, *kind) {
            panic!("rejected {doc}: {e}");
        }
    }
    let p = Policy::parse(DEFAULT_KEY_POLICY, PolicyKind::Key).unwrap();
    assert_eq!(p.statement_count(), 1);
    assert_eq!(p.kind(), PolicyKind::Key);
}

#[test]
fn policy_context_and_principal_helpers() {
    let mut c = ConditionContext::new();
    c.set("AWS:SourceIp", "192.0.2.1");
    c.set("kms:EncryptionContext:AppName", "x");
    c.set_many("kms:EncryptionContextKeys", vec!["AppName".into()]);
    c.push("aws:TagKeys", "a");
    c.push("AWS:TAGKEYS", "b");
    assert_eq!(c.get("aws:sourceip"), Some(&["192.0.2.1".to_owned()][..]));
    assert_eq!(
        c.get("KMS:ENCRYPTIONCONTEXT:AppName"),
        Some(&["x".to_owned()][..])
    );
    assert_eq!(c.get("kms:EncryptionContext:appname"), None);
    assert_eq!(c.get("aws:TagKeys").map(<[String]>::len), Some(2));
    c.remove("aws:tagkeys");
    assert_eq!(c.get("aws:TagKeys"), None);
    assert_eq!(
        normalize_key("aws:PrincipalTag/Team"),
        "aws:principaltag/Team"
    );
    assert_eq!(normalize_key("aws:RequestTag/Team"), "aws:requesttag/Team");
    assert_eq!(
        normalize_key("kms:EncryptionContextKeys"),
        "kms:encryptioncontextkeys"
    );

    let s = Principal::from_arn(SESSION).unwrap();
    assert_eq!(s.account, "111122223333");
    assert_eq!(s.role_arn.as_deref(), Some(ROLE));
    let u = Principal::from_arn(ALICE).unwrap();
    assert_eq!(u.role_arn, None);
    assert!(Principal::from_arn("arn:aws:kms:us-east-1:111122223333:key/x").is_none());
    assert!(Principal::from_arn("nope").is_none());

    fn send_sync<T: Send + Sync>() {}
    send_sync::<Policy>();
}

/// Timing: `cargo test --release -p kms-core policy_eval_timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn policy_eval_timing() {
    let policy = Policy::parse(
        r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
    {"Sid": "DenyOutside", "Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
     "Condition": {"NotIpAddress": {"aws:SourceIp": ["192.0.2.0/24", "203.0.113.0/24"]}, "Bool": {"aws:ViaAWSService": "false"}}},
    {"Sid": "App", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/ExampleRole"}, "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
     "Condition": {"StringEquals": {"kms:EncryptionContext:AppName": "ExampleApp"}, "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["AppName", "Project"]}}}
  ]
}"#,
        PolicyKind::Key,
    )
    .unwrap();
    let principal = Principal::from_arn(SESSION).unwrap();
    let mut ctx = ConditionContext::new();
    for (k, v) in [
        ("aws:SourceIp", "192.0.2.44"),
        ("aws:ViaAWSService", "false"),
        ("aws:SecureTransport", "true"),
        ("aws:CurrentTime", "2026-01-01T00:00:00Z"),
        ("aws:PrincipalArn", SESSION),
        ("kms:CallerAccount", "111122223333"),
        ("kms:EncryptionContext:AppName", "ExampleApp"),
    ] {
        ctx.set(k, v);
    }
    ctx.set_many("kms:EncryptionContextKeys", vec!["AppName".into()]);
    let req = Request {
        principal: &principal,
        action: "kms:Decrypt",
        resource: KEY,
        context: &ctx,
    };
    let want = Evaluation {
        explicit_deny: None,
        allow_principal: true,
        allow_account: true,
        allow: false,
    };
    assert_eq!(policy.evaluate(&req), want);
    let n = 1_000_000u32;
    let start = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(policy.evaluate(std::hint::black_box(&req)));
    }
    let per = start.elapsed().as_nanos() / u128::from(n);
    println!("policy evaluate: {per} ns/eval (3 statements, 4 conditions)");
}

#[test]
fn policy_reads_context_only_with_conditions_or_variables() {
    let id = |body: &str| Policy::parse(body, PolicyKind::Identity).map(|p| p.reads_context());
    let plain = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"kms:*","Resource":"*"}}"#;
    assert_eq!(id(plain), Ok(false));
    let cond = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"kms:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}}"#;
    assert_eq!(id(cond), Ok(true));
    let var = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"kms:*","Resource":"arn:aws:kms:*:*:alias/${aws:username}"}}"#;
    assert_eq!(id(var), Ok(true));
    // Without the 2012-10-17 version, `${...}` is literal text.
    let literal = r#"{"Statement":{"Effect":"Allow","Action":"kms:*","Resource":"arn:aws:kms:*:*:alias/${aws:username}"}}"#;
    assert_eq!(id(literal), Ok(false));
}
