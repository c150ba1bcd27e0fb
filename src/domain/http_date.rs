use chrono::{DateTime, Utc};

/// RFC 9110 IMF-fixdate, as `Upload-Expires` requires: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(at: DateTime<Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_imf_fixdate() {
        let at = Utc.with_ymd_and_hms(1994, 11, 6, 8, 49, 37).single().expect("valid date");
        assert_eq!(http_date(at), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
