//! `/v1/patients`: a patient's chart, cut down to what the caller's role and care team allow.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::phi::Phi;
use crate::wire::break_glass::BreakGlassGrant;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClinicalSummary {
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub allergies: Phi<Vec<String>>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub problems: Phi<Vec<String>>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub medications: Phi<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Patient {
    pub id: Uuid,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub name: Phi<String>,
    /// `YYYY-MM-DD`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub birth_date: Phi<String>,
    /// The clinic's medical record number (empty in copies cached before it existed).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub mrn: Phi<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub phone: Phi<String>,
    /// Present only when the caller may read this patient's clinical content: a clinician
    /// of the patient's care team, or one who broke the glass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clinical: Option<ClinicalSummary>,
    /// Why `clinical` is there or not.
    #[serde(default)]
    pub clinical_access: ClinicalAccess,
    /// The break-glass grant the clinical summary was read under; present exactly when
    /// `clinical_access` is `break_glass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlassGrant>,
}

impl Patient {
    /// The names of the fields this value carries, for the audit event.
    pub fn field_names(&self) -> Vec<String> {
        let mut fields = vec!["name", "birth_date", "mrn", "phone"];
        if self.clinical.is_some() {
            fields.extend(["allergies", "problems", "medications"]);
        }
        fields.into_iter().map(str::to_owned).collect()
    }
}

/// How much of a patient's chart the caller sees, and why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ClinicalAccess {
    /// The caller's role reads no clinical content.
    #[default]
    NotPermitted,
    /// The patient is on the caller's care team.
    CareTeam,
    /// The caller's role reads clinical content, but this patient is outside their care
    /// team: the summary is withheld unless they break the glass.
    OutsideCareTeam,
    /// Read under a break-glass grant: every access is flagged for an admin's review.
    BreakGlass,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_clinical_summary_is_absent_not_null() {
        let p = Patient {
            id: Uuid::nil(),
            name: Phi::new("A".into()),
            birth_date: Phi::new("2000-01-01".into()),
            mrn: Phi::new("MRN-1".into()),
            phone: Phi::new("555".into()),
            clinical: None,
            clinical_access: ClinicalAccess::NotPermitted,
            break_glass: None,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("\"clinical\""), "{json}");
        assert!(!json.contains("break_glass"), "{json}");
        assert!(
            json.contains("\"clinical_access\":\"not_permitted\""),
            "{json}"
        );
        assert_eq!(p.field_names(), vec!["name", "birth_date", "mrn", "phone"]);
    }
}
