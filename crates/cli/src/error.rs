//! How failures end the program: `error <code> <REASON>: <message>` for API errors, a hint for the
//! common ones, exit code 1 (2 for usage mistakes).

use std::fmt;
use std::process::ExitCode;

use atelier_codes::ErrorCode;
use tonic_types::StatusExt;

/// A mistake on the command line that clap cannot see (exit code 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A failure already printed (a job that did not succeed, a service that is not serving): exit 1
/// without another message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reported;

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("failure already reported")
    }
}

impl std::error::Error for Reported {}

/// Prints `err` on stderr and returns the exit code it deserves.
pub fn report(err: &anyhow::Error, endpoint: &str) -> ExitCode {
    if err.downcast_ref::<Reported>().is_some() {
        return ExitCode::FAILURE;
    }
    if let Some(usage) = err.downcast_ref::<UsageError>() {
        eprintln!("error: {usage}");
        return ExitCode::from(2);
    }
    if let Some(status) = err.downcast_ref::<tonic::Status>() {
        eprint!("{}", describe_status(status, endpoint));
        return ExitCode::FAILURE;
    }
    eprintln!("error: {err:#}");
    ExitCode::FAILURE
}

/// The lines printed for a failed call: the code line, field violations, and a hint.
pub fn describe_status(status: &tonic::Status, endpoint: &str) -> String {
    let decoded = atelier_codes::decode(status);
    let message = message_of(status);
    let mut out = format!(
        "error {} {}: {message}\n",
        decoded.code.number(),
        decoded.code.reason()
    );
    if let Some(bad) = status.get_details_bad_request() {
        let violations: Vec<String> = bad
            .field_violations
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect();
        // Atelier's messages already list the violations; other servers' may not.
        if violations.join("; ") != message {
            for v in &violations {
                out.push_str(&format!("  {v}\n"));
            }
        }
    }
    if let Some(hint) = hint(decoded.code, endpoint) {
        out.push_str(&format!("hint: {hint}\n"));
    }
    out
}

fn message_of(status: &tonic::Status) -> String {
    let message = status.message().trim();
    if message.is_empty() {
        format!("{:?}", status.code())
    } else {
        message.replace('\n', " ")
    }
}

/// One line of advice for the codes people hit most.
pub fn hint(code: ErrorCode, endpoint: &str) -> Option<String> {
    let text = match code {
        ErrorCode::Unauthenticated => {
            "check --key (ATELIER_API_KEY); admin commands use --admin-token (ATELIER_ADMIN_TOKEN)".to_string()
        }
        ErrorCode::PermissionDenied => {
            "this credential may not do that: admin commands need --admin-token, and an account-scoped key acts only as its account"
                .to_string()
        }
        ErrorCode::NotFound => "the id does not exist, or belongs to another tenant or account".to_string(),
        ErrorCode::IdempotencyConflict => {
            "that --idempotency-key was used for a different request; choose a new key".to_string()
        }
        ErrorCode::Unavailable => format!("is the service running and reachable at {endpoint}? (`atelier health`)"),
        ErrorCode::MembershipRequired => {
            "the account needs an active membership: atelier admin membership TENANT_ID ACCOUNT --active true".to_string()
        }
        ErrorCode::QuotaExhausted => {
            "the account's balance is too low: atelier admin grant TENANT_ID ACCOUNT UNITS (see `atelier account`)".to_string()
        }
        ErrorCode::TooManyActiveJobs => {
            "too many jobs are queued or running for this account; wait for some or cancel them".to_string()
        }
        ErrorCode::InvalidArgument => "a request field is wrong (see above); `atelier help submit` lists the options".to_string(),
        ErrorCode::DownloadFailed => "the source URL could not be downloaded; check that it answers 200".to_string(),
        ErrorCode::UnsupportedFormat => "sources must be JPEG, PNG or WebP".to_string(),
        ErrorCode::InvalidDimensions => {
            "images must be larger than 14 px on each side and at most 50 megapixels".to_string()
        }
        ErrorCode::SourceBlocked => {
            "the source address is private or loopback; use a public URL or upload the file".to_string()
        }
        ErrorCode::SourceTooLarge => "sources are limited to 10 MiB; shrink or recompress the file".to_string(),
        ErrorCode::DecodeFailed => "the file is damaged or not really an image".to_string(),
        _ => return None,
    };
    Some(text)
}

#[cfg(test)]
mod tests {
    use atelier_codes::FieldViolation;

    use super::*;

    #[test]
    fn api_errors_print_code_reason_message_and_hint() {
        let status = atelier_codes::status(ErrorCode::QuotaExhausted, "balance 0, job costs 1");
        let text = describe_status(&status, "http://x");
        assert!(
            text.starts_with("error 2002 QUOTA_EXHAUSTED: balance 0, job costs 1\n"),
            "{text}"
        );
        assert!(text.contains("hint: "), "{text}");
    }

    #[test]
    fn field_violations_are_listed_once() {
        let status = atelier_codes::bad_request(&[FieldViolation::new("sources", "at most 100")]);
        let text = describe_status(&status, "http://x");
        assert!(
            text.starts_with("error 1003 INVALID_ARGUMENT: sources: at most 100\nhint: "),
            "{text}"
        );
        let mut details = tonic_types::ErrorDetails::new();
        details.add_bad_request_violation("params.width", "must be above 0");
        let status =
            tonic::Status::with_error_details(tonic::Code::InvalidArgument, "bad request", details);
        let text = describe_status(&status, "http://x");
        assert!(
            text.starts_with(
                "error 1003 INVALID_ARGUMENT: bad request\n  params.width: must be above 0\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn statuses_without_error_info_are_guessed_from_the_grpc_code() {
        let text = describe_status(
            &tonic::Status::unavailable("tcp connect error"),
            "http://127.0.0.1:1",
        );
        assert!(
            text.starts_with("error 1009 UNAVAILABLE: tcp connect error\n"),
            "{text}"
        );
        assert!(text.contains("http://127.0.0.1:1"), "{text}");
    }
}
