//! Dataverse choice values the bridge reads or writes (docs/sources.md#tables).

/// The global choice `msdyn_streamsource`: the channel of a workstream
/// (`msdyn_liveworkstream.msdyn_streamsource`) or of a live work item
/// (`msdyn_ocliveworkitem.msdyn_channel`, a multi-select sent as the value's text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamSource {
    LiveChat,
    Sms,
    WhatsApp,
    /// A custom messaging channel.
    Custom,
    /// Record routing, not a conversation channel.
    EntityRecords,
    Voice,
    VoiceCall,
}

impl StreamSource {
    const ALL: [Self; 7] = [
        Self::LiveChat,
        Self::Sms,
        Self::WhatsApp,
        Self::Custom,
        Self::EntityRecords,
        Self::Voice,
        Self::VoiceCall,
    ];

    /// The choice's value.
    pub const fn value(self) -> i64 {
        match self {
            Self::LiveChat => 192_360_000,
            Self::Sms => 192_340_000,
            Self::WhatsApp => 192_300_000,
            Self::Custom => 192_350_002,
            Self::EntityRecords => 192_350_000,
            Self::Voice => 192_370_000,
            Self::VoiceCall => 192_440_000,
        }
    }

    /// The option with this value, if it is one the bridge knows.
    pub fn from_value(value: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.value() == value)
    }

    /// Whether the channel is messaging (a chat a live work item can carry).
    pub fn is_messaging(self) -> bool {
        matches!(
            self,
            Self::LiveChat | Self::Sms | Self::WhatsApp | Self::Custom
        )
    }
}

/// `msdyn_workdistributionmode`: how a workstream hands out work.
pub const WORK_DISTRIBUTION_PICK: i64 = 192_350_001;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        for source in StreamSource::ALL {
            assert_eq!(StreamSource::from_value(source.value()), Some(source));
        }
        assert_eq!(StreamSource::from_value(1), None);
        assert!(StreamSource::Custom.is_messaging());
        assert!(!StreamSource::EntityRecords.is_messaging());
    }
}
