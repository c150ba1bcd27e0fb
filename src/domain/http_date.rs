use chrono::{DateTime, Datelike, Timelike, Utc};

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// RFC 9110 IMF-fixdate, as `Upload-Expires` requires: `Sun, 06 Nov 1994 08:49:37 GMT`.
/// Written out by hand: chrono's `format` parses its pattern on every call, 4.6k
/// instructions of every PATCH and HEAD that carries the header (callgrind).
pub fn http_date(at: DateTime<Utc>) -> String {
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[at.weekday().num_days_from_monday() as usize],
        at.day(),
        MONTHS[at.month0() as usize],
        at.year(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_imf_fixdate() {
        let at = Utc.with_ymd_and_hms(1994, 11, 6, 8, 49, 37).single().expect("valid date");
        assert_eq!(http_date(at), "Sun, 06 Nov 1994 08:49:37 GMT");
        let at = Utc.with_ymd_and_hms(2027, 1, 4, 23, 5, 9).single().expect("valid date");
        assert_eq!(http_date(at), "Mon, 04 Jan 2027 23:05:09 GMT");
    }
}
